package globalconf_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/globalconf"
	"github.com/qapi-az/qapi/appliance/ident"
	"github.com/qapi-az/qapi/internal/testpki"
)

// confServer serves whatever body was set last.
type confServer struct {
	mu   sync.Mutex
	body []byte
}

func (s *confServer) set(b []byte) { s.mu.Lock(); s.body = b; s.mu.Unlock() }

func (s *confServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Write(s.body)
}

func TestFetcher(t *testing.T) {
	ca, err := testpki.NewCA("config")
	if err != nil {
		t.Fatal(err)
	}
	op := ident.Client{Instance: "AZ", MemberClass: "GOV", MemberCode: "OPERATOR"}
	signer, err := ca.IssueSigning(op)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := now
	sign := func(serial uint64, issued time.Time) []byte {
		t.Helper()
		b, err := globalconf.Sign(&globalconf.Conf{Instance: "AZ", Serial: serial,
			Issued: issued, Expires: issued.Add(10 * time.Minute)}, signer.Key, signer.Cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	srv := &confServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	anchor := &globalconf.Anchor{Instance: "AZ", ConfigURLs: []string{hs.URL},
		Certs: [][]byte{signer.Cert.Raw}}
	path := filepath.Join(t.TempDir(), "globalconf.json")
	opts := globalconf.FetcherOptions{Anchor: anchor, Path: path,
		Now: func() time.Time { return clock }}
	f, err := globalconf.NewFetcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	if _, err := f.Current(); !errors.Is(err, globalconf.ErrNoConf) {
		t.Fatalf("Current before any fetch = %v, want ErrNoConf", err)
	}
	first := sign(5, now)
	srv.set(first)
	if err := f.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := f.Current(); err != nil || c.Serial != 5 {
		t.Fatalf("Current = %v, %v; want serial 5", c, err)
	}

	// A tampered document is refused with a message that says so, and the
	// good one stays in use.
	tampered := strings.Replace(string(sign(6, now)), `"content": "`, `"content": "AAAA`, 1)
	srv.set([]byte(tampered))
	err = f.Refresh(ctx)
	if !errors.Is(err, globalconf.ErrTampered) || !strings.Contains(err.Error(), "refused") ||
		!strings.Contains(err.Error(), "changed after signing") {
		t.Errorf("Refresh(tampered) = %v", err)
	}
	if c, err := f.Current(); err != nil || c.Serial != 5 {
		t.Errorf("after a tampered fetch Current = %v, %v; want serial 5 kept", c, err)
	}

	// A document already expired when fetched is refused.
	srv.set(sign(7, now.Add(-time.Hour)))
	if err := f.Refresh(ctx); !errors.Is(err, globalconf.ErrStale) {
		t.Errorf("Refresh(expired) = %v, want ErrStale", err)
	}

	// A validly signed older serial is a replay and is refused.
	srv.set(sign(4, now))
	if err := f.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "older than") {
		t.Errorf("Refresh(older serial) = %v", err)
	}

	// Another document under the serial in use is refused too, and the
	// same document again is a success that changes nothing.
	srv.set(sign(5, now))
	if err := f.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "other contents") {
		t.Errorf("Refresh(serial 5 re-signed) = %v", err)
	}
	srv.set(first)
	if err := f.Refresh(ctx); err != nil {
		t.Errorf("Refresh(the document in use) = %v", err)
	}

	// A restarted server serves the kept copy before any fetch.
	hs.Close()
	f2, err := globalconf.NewFetcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := f2.Current(); err != nil || c.Serial != 5 {
		t.Fatalf("restarted Current = %v, %v; want the kept serial 5", c, err)
	}

	// When the portal stays unreachable past expiry, the server stops
	// trusting the configuration and says why.
	clock = now.Add(11 * time.Minute)
	if err := f2.Refresh(ctx); err == nil {
		t.Fatal("Refresh against a closed server succeeded")
	}
	_, err = f2.Current()
	if !errors.Is(err, globalconf.ErrStale) || !strings.Contains(err.Error(), "last fetch") {
		t.Errorf("Current after expiry = %v, want ErrStale naming the fetch failure", err)
	}
	if st := f2.Status(); st.Serial != 5 || st.LastError == nil {
		t.Errorf("Status = %+v", st)
	}
}
