package ocsp

import (
	"bytes"
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

// TestCheckerJudgesRememberedResponses: a response whose signature a
// Checker checked once is judged again on every call, so it turns too old
// while remembered; and another certificate's check of it still fails.
func TestCheckerJudgesRememberedResponses(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, err := ca.IssueSigning(member)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueSigning(ident.Client{Instance: "AZ", MemberClass: "GOV",
		MemberCode: "2"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	clock := now
	c := &Checker{Now: func() time.Time { return clock }}
	der := respond(t, ca.Cert, ca.Cert, ca.Key, signer.Cert.SerialNumber, ocsp.Good, now)

	for i := range 2 {
		if err := c.Check(signer.Cert, ca.Cert, der); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if err := c.Check(other.Cert, ca.Cert, der); !errors.Is(err, ErrInvalid) {
		t.Errorf("another certificate's check = %v, want ErrInvalid", err)
	}
	clock = now.Add(DefaultMaxAge + time.Minute)
	if err := c.Check(signer.Cert, ca.Cert, der); !errors.Is(err, ErrTooOld) {
		t.Errorf("check after %s = %v, want ErrTooOld", DefaultMaxAge, err)
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

	// Past half the validity the stapler fetches again, in the background.
	now = now.Add(31 * time.Minute)
	clock = now
	_, err = s.Response()
	settle(s)
	if err != nil || fetches.Load() != 2 {
		t.Fatalf("Response past the refresh point: err %v, %d fetches, want 2", err,
			fetches.Load())
	}

	// With the responder gone, the cached response serves while valid.
	srv.Close()
	now = now.Add(40 * time.Minute)
	_, err = s.Response()
	settle(s)
	if err != nil {
		t.Fatalf("Response with the responder down but the cache valid: %v", err)
	}
	now = now.Add(30 * time.Minute)
	if _, err := s.Response(); err == nil {
		t.Fatal("Response past nextUpdate with the responder down succeeded")
	}
}

// settle waits for the stapler's fetch under way, if any, so that a test
// may change the clock the fetch reads.
func settle(s *Stapler) {
	s.mu.Lock()
	f := s.flight
	s.mu.Unlock()
	if f != nil {
		<-f.done
	}
}

// TestStaplerServesCacheDuringRefresh: signing must not wait on a slow
// responder while a valid response is cached, and callers share one fetch.
func TestStaplerServesCacheDuringRefresh(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, _ := ca.IssueSigning(member)
	var fetches atomic.Int32
	stall := make(chan struct{})
	var stalled atomic.Bool
	start := time.Now().Truncate(time.Second)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := fetches.Add(1)
		if stalled.Load() {
			<-stall
		}
		this := start
		if n > 1 {
			this = start.Add(31 * time.Minute)
		}
		w.Write(respond(t, ca.Cert, ca.Cert, ca.Key, signer.Cert.SerialNumber, ocsp.Good,
			this))
	}))
	defer srv.Close()
	var now atomic.Int64
	now.Store(start.UnixNano())
	s, _ := NewStapler(signer.Cert, ca.Cert, StaplerOptions{URL: srv.URL,
		Now: func() time.Time { return time.Unix(0, now.Load()) }})

	// With nothing cached, concurrent callers wait for one fetch.
	stalled.Store(true)
	results := make(chan error)
	for range 5 {
		go func() { _, err := s.Response(); results <- err }()
	}
	time.Sleep(50 * time.Millisecond)
	close(stall)
	for range 5 {
		if err := <-results; err != nil {
			t.Fatalf("Response with nothing cached: %v", err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("5 callers with nothing cached made %d fetches, want 1", n)
	}
	cached, _ := s.Response()

	// Past the refresh point with the responder stalled, callers get the
	// cached response at once.
	stall = make(chan struct{})
	now.Store(start.Add(31 * time.Minute).UnixNano())
	for range 5 {
		got := make(chan []byte)
		go func() { der, _ := s.Response(); got <- der }()
		select {
		case der := <-got:
			if !bytes.Equal(der, cached) {
				t.Fatal("Response during the refresh is not the cached response")
			}
		case <-time.After(2 * time.Second):
			close(stall)
			t.Fatal("Response waited for the refresh while a valid response was cached")
		}
	}
	close(stall)
	settle(s)
	if n := fetches.Load(); n != 2 {
		t.Errorf("5 callers past the refresh point made %d fetches, want 1", n-1)
	}
	if der, err := s.Response(); err != nil || bytes.Equal(der, cached) {
		t.Errorf("after the refresh Response = %v, the old response: %v", err,
			bytes.Equal(der, cached))
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

// TestStaplerRefreshAfterFetchUnderWay: Refresh does not take the result
// of a fetch that started before it, which may predate a revocation.
func TestStaplerRefreshAfterFetchUnderWay(t *testing.T) {
	ca, _ := testpki.NewCA("cc")
	signer, _ := ca.IssueSigning(member)
	stall := make(chan struct{})
	var status atomic.Int32 // ocsp.Good
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := int(status.Load())
		if fetches.Add(1) == 1 {
			<-stall
		}
		w.Write(respond(t, ca.Cert, ca.Cert, ca.Key, signer.Cert.SerialNumber, st,
			time.Now()))
	}))
	defer srv.Close()
	s, _ := NewStapler(signer.Cert, ca.Cert, StaplerOptions{URL: srv.URL})
	go s.Response()
	for fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	status.Store(ocsp.Revoked)
	refreshed := make(chan error)
	go func() { refreshed <- s.Refresh(context.Background()) }()
	close(stall)
	if err := <-refreshed; !errors.Is(err, ErrRevoked) {
		t.Errorf("Refresh after a revocation, with a fetch from before under way = %v, "+
			"want ErrRevoked", err)
	}
}
