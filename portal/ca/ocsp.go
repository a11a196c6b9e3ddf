package ca

import (
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Respond answers one DER OCSP request (RFC 6960): good for a certificate
// this centre issued and has not revoked, revoked with the time and reason
// otherwise, unknown for a serial it never issued. The response is signed
// by the centre's own key, so a relying party needs no delegated responder
// certificate. A request about another issuer is answered unauthorized.
func (c *CA) Respond(reqDER []byte) []byte {
	req, err := ocsp.ParseRequest(reqDER)
	if err != nil {
		return ocsp.MalformedRequestErrorResponse
	}
	if !req.HashAlgorithm.Available() || !c.issuerMatches(req) {
		return ocsp.UnauthorizedErrorResponse
	}
	now := c.opts.Now().UTC().Truncate(time.Second)
	tmpl := ocsp.Response{
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now,
		NextUpdate:   now.Add(c.opts.OCSPValidity),
		Status:       ocsp.Unknown,
		IssuerHash:   req.HashAlgorithm,
	}
	rec, ok, err := c.Lookup(req.SerialNumber)
	if err != nil {
		return ocsp.InternalErrorErrorResponse
	}
	if ok {
		tmpl.Status = ocsp.Good
		if rec.Revoked() {
			tmpl.Status = ocsp.Revoked
			tmpl.RevokedAt = rec.RevokedAt
			tmpl.RevocationReason = rec.Reason
		}
	}
	resp, err := ocsp.CreateResponse(c.cert, c.cert, tmpl, c.key)
	if err != nil {
		return ocsp.InternalErrorErrorResponse
	}
	return resp
}

func (c *CA) issuerMatches(req *ocsp.Request) bool {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(c.cert.RawSubjectPublicKeyInfo, &spki); err != nil {
		return false
	}
	return equalHash(req.HashAlgorithm, spki.PublicKey.Bytes, req.IssuerKeyHash) &&
		equalHash(req.HashAlgorithm, c.cert.RawSubject, req.IssuerNameHash)
}

func equalHash(h crypto.Hash, data, want []byte) bool {
	hh := h.New()
	hh.Write(data)
	return string(hh.Sum(nil)) == string(want)
}

// OCSPHandler serves the responder over HTTP: POST with an
// application/ocsp-request body, or GET with the base64 request as the
// last path element (RFC 6960 appendix A).
func (c *CA) OCSPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var der []byte
		switch r.Method {
		case http.MethodPost:
			b, err := io.ReadAll(io.LimitReader(r.Body, 10<<10))
			if err != nil {
				http.Error(w, "read OCSP request: "+err.Error(), http.StatusBadRequest)
				return
			}
			der = b
		case http.MethodGet:
			p := r.URL.EscapedPath()
			p = p[strings.LastIndexByte(p, '/')+1:]
			u, err := url.PathUnescape(p)
			if err == nil {
				der, err = base64.StdEncoding.DecodeString(u)
			}
			if err != nil {
				der = nil
			}
		default:
			http.Error(w, "OCSP takes GET or POST", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(c.Respond(der))
	})
}
