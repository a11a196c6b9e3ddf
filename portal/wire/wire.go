// Package wire defines the JSON documents that security servers exchange
// with the portal's public endpoints: certificate requests (4.1.2.10),
// server registrations (4.1.2), and the signed envelope that proves a
// document comes from the holder of a security server's authentication key,
// and the HTTP conventions of the portal's and the security server's JSON
// APIs: errors as ErrorAnswer, bearer tokens, bounded answers. Both the
// portal and the security server import it; it imports nothing of either.
package wire

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/qapi-az/qapi/appliance/ident"
)

// Paths of the portal's public endpoints.
const (
	PathCertRequests  = "/ca/requests"   // POST CertRequest; GET .../{id}
	PathRegistrations = "/registrations" // POST Signed{ServerRegistration}; GET .../{id}
	PathOCSP          = "/ocsp"
	PathTSA           = "/tsa"
	PathGlobalConf    = "/globalconf/" // + instance
	PathIncidents     = "/incidents"   // POST Signed{incident.Report}
	PathCACert        = "/ca/cert"     // GET, DER
)

// CertRequest hands a PKCS#10 request to the certification centre.
type CertRequest struct {
	// Kind is "signing" or "auth".
	Kind   string       `json:"kind"`
	Member ident.Client `json:"member"`
	// ServerCode names the security server; auth requests only.
	ServerCode string `json:"serverCode,omitempty"`
	// CSR is the DER PKCS#10 request.
	CSR []byte `json:"csr"`
}

// CertRequestStatus is where a certificate request stands.
type CertRequestStatus struct {
	ID uint64 `json:"id"`
	// State is pending, issued or rejected.
	State string `json:"state"`
	// Cert is the DER certificate once issued.
	Cert   []byte `json:"cert,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ServerRegistration asks the central server to register a security server
// (4.1.2): the operator approves it, and from then on the global
// configuration lists the server with its address and pinned
// authentication certificate.
type ServerRegistration struct {
	Owner ident.Client `json:"owner"`
	Code  string       `json:"code"`
	// Address is host:port of the server-side proxy.
	Address string `json:"address"`
	// Clients are the owner and its subsystems the server serves.
	Clients []ident.Client `json:"clients"`
	// AuthCert is the DER authentication certificate; the envelope must be
	// signed by its key.
	AuthCert []byte    `json:"authCert"`
	Time     time.Time `json:"time"`
}

// RegistrationStatus is where a registration stands.
type RegistrationStatus struct {
	ID     uint64 `json:"id"`
	State  string `json:"state"` // pending, approved, rejected
	Reason string `json:"reason,omitempty"`
}

// Signed carries a JSON document signed with ECDSA P-256 over the SHA-256
// of Payload, by the key of Cert.
type Signed struct {
	Payload   []byte `json:"payload"`
	Signature []byte `json:"signature"`
	// Cert is the DER certificate of the signing key.
	Cert []byte `json:"cert"`
}

// Sign encodes v as JSON and signs it with key, whose certificate is cert.
func Sign(v any, key crypto.Signer, cert []byte) (*Signed, error) {
	p, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode signed document: %w", err)
	}
	sum := sha256.Sum256(p)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign document: %w", err)
	}
	return &Signed{Payload: p, Signature: sig, Cert: cert}, nil
}

// MaxAge is how old a signed document's time may be when it arrives.
const MaxAge = 10 * time.Minute

// Open checks the signature against the envelope's certificate, checks
// that certificate against roots at now, decodes the payload into v, and
// returns the certificate. The caller checks what the certificate names.
func (s *Signed) Open(v any, roots *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(s.Cert)
	if err != nil {
		return nil, fmt.Errorf("signer certificate: %w", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("signer certificate is not from the portal's "+
			"certification centre: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, errors.New("signer key is not ECDSA")
	}
	sum := sha256.Sum256(s.Payload)
	if !ecdsa.VerifyASN1(pub, sum[:], s.Signature) {
		return nil, errors.New("signature does not verify: the document was changed " +
			"or not signed with the certificate's key")
	}
	if err := json.Unmarshal(s.Payload, v); err != nil {
		return nil, fmt.Errorf("signed document: %w", err)
	}
	return cert, nil
}
