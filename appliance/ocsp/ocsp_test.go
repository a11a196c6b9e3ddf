package ocsp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
)

var member = ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "1"}

func respond(t *testing.T, issuer *x509.Certificate, responder *x509.Certificate,
	key crypto.Signer, serial *big.Int, status int, this time.Time) []byte {
	t.Helper()
	tmpl := ocsp.Response{SerialNumber: serial, Status: status, ThisUpdate: this,
		NextUpdate: this.Add(time.Hour), RevokedAt: this.Add(-time.Hour)}
	if responder != issuer {
		tmpl.Certificate = responder
	}
	der, err := ocsp.CreateResponse(issuer, responder, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// delegate issues an OCSP responder certificate from ca, with or without
// the OCSPSigning extended key usage.
func delegate(t *testing.T, ca *testpki.CA, withEKU bool) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(99),
		Subject:   pkix.Name{CommonName: "responder"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature}
	if withEKU {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func TestChecker(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	other, _ := testpki.NewCA("other")
	signer, err := ca.IssueSigning(member)
	if err != nil {
		t.Fatal(err)
	}
	cert := signer.Cert
	now := time.Now().Truncate(time.Second)
	good, goodKey := delegate(t, ca, true)
	noEKU, noEKUKey := delegate(t, ca, false)
	conf := &globalconf.Conf{Instance: "AZ", Issued: now.Add(-time.Minute),
		Expires: now.Add(time.Hour), OCSPMaxAge: globalconf.Duration(10 * time.Minute)}
	c := &Checker{Source: globalconf.NewStatic(conf), Now: func() time.Time { return now }}

	tests := []struct {
		name string
		der  []byte
		want error // nil: accepted
	}{
		{"good from the CA", respond(t, ca.Cert, ca.Cert, ca.Key, cert.SerialNumber,
			ocsp.Good, now.Add(-time.Minute)), nil},
		{"good from a delegated responder", respond(t, ca.Cert, good, goodKey,
			cert.SerialNumber, ocsp.Good, now), nil},
		{"responder without OCSPSigning", respond(t, ca.Cert, noEKU, noEKUKey,
			cert.SerialNumber, ocsp.Good, now), ErrInvalid},
		{"revoked", respond(t, ca.Cert, ca.Cert, ca.Key, cert.SerialNumber,
			ocsp.Revoked, now), ErrRevoked},
		{"unknown", respond(t, ca.Cert, ca.Cert, ca.Key, cert.SerialNumber,
			ocsp.Unknown, now), ErrUnknown},
		{"older than OCSPMaxAge", respond(t, ca.Cert, ca.Cert, ca.Key, cert.SerialNumber,
			ocsp.Good, now.Add(-11*time.Minute)), ErrTooOld},
		{"past nextUpdate", respond(t, ca.Cert, ca.Cert, ca.Key, cert.SerialNumber,
			ocsp.Good, now.Add(-2*time.Hour)), ErrTooOld},
		{"signed by another CA", respond(t, ca.Cert, other.Cert, other.Key,
			cert.SerialNumber, ocsp.Good, now), ErrInvalid},
		{"another certificate", respond(t, ca.Cert, ca.Cert, ca.Key, big.NewInt(424242),
			ocsp.Good, now), ErrInvalid},
		{"nothing stapled", nil, ErrMissing},
	}
	for _, tt := range tests {
		err := c.Check(cert, ca.Cert, tt.der)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: Check = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestStapler(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, _ := ca.IssueSigning(member)
	var fetches atomic.Int32
	var status atomic.Int32 // ocsp.Good
	clock := time.Now().Truncate(time.Second)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		body, _ := io.ReadAll(r.Body)
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Write(respond(t, ca.Cert, ca.Cert, ca.Key, req.SerialNumber,
			int(status.Load()), clock))
	}))
	defer srv.Close()
	now := clock
	s, err := NewStapler(signer.Cert, ca.Cert, StaplerOptions{URL: srv.URL,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.Response()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(first, signer.Cert, ca.Cert, now, time.Hour); err != nil {
		t.Fatalf("stapled response does not verify: %v", err)
	}
	if _, err := s.Response(); err != nil || fetches.Load() != 1 {
		t.Fatalf("second Response: err %v, %d fetches; want the cached one", err,
			fetches.Load())
	}

	// Past half the validity the stapler fetches again.
	now = now.Add(31 * time.Minute)
	clock = now
	if _, err := s.Response(); err != nil || fetches.Load() != 2 {
		t.Fatalf("Response past the refresh point: err %v, %d fetches, want 2", err,
			fetches.Load())
	}

	// With the responder gone, the cached response serves while valid.
	srv.Close()
	now = now.Add(40 * time.Minute)
	if _, err := s.Response(); err != nil {
		t.Fatalf("Response with the responder down but the cache valid: %v", err)
	}
	now = now.Add(30 * time.Minute)
	if _, err := s.Response(); err == nil {
		t.Fatal("Response past nextUpdate with the responder down succeeded")
	}
}

func TestStaplerRefusesRevokedOwnCert(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, _ := ca.IssueSigning(member)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(respond(t, ca.Cert, ca.Cert, ca.Key, signer.Cert.SerialNumber,
			ocsp.Revoked, time.Now()))
	}))
	defer srv.Close()
	s, _ := NewStapler(signer.Cert, ca.Cert, StaplerOptions{URL: srv.URL})
	if _, err := s.Response(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Response for a revoked own certificate = %v, want ErrRevoked", err)
	}
}

func TestStaplerDropsCacheOnRevocation(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, _ := ca.IssueSigning(member)
	var status atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(respond(t, ca.Cert, ca.Cert, ca.Key, signer.Cert.SerialNumber,
			int(status.Load()), time.Now()))
	}))
	defer srv.Close()
	s, _ := NewStapler(signer.Cert, ca.Cert, StaplerOptions{URL: srv.URL})
	if _, err := s.Response(); err != nil {
		t.Fatal(err)
	}
	status.Store(ocsp.Revoked)
	if err := s.Refresh(context.Background()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Refresh after revocation = %v", err)
	}
	if _, err := s.Response(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Response after learning of the revocation = %v, want ErrRevoked", err)
	}
}
