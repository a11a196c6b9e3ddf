package sign

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/soap"
	"github.com/qapi-az/qapi/internal/testpki"
)

// wantCode fails t unless err is a *soap.Fault with code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	var flt *soap.Fault
	if !errors.As(err, &flt) || flt.Code != code {
		t.Errorf("%s: %v, want %s", what, err, code)
	}
}

// A chain cached for one set of roots must not vouch for the certificate
// under other roots, nor for a certificate of another CA under the same
// roots.
func TestChainCacheKeepsRootsApart(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	body, ct, err := f.signer.Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(body, ct, f.opts()); err != nil {
		t.Fatal(err)
	}
	key := chainKey{cert: sha256.Sum256(f.signer.Cert.Raw), roots: f.roots}
	if chains.get(key) == nil {
		t.Fatal("a verified chain was not cached")
	}

	otherCA, err := testpki.NewCA("Qapı other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(otherCA.Cert)
	opts := f.opts()
	opts.Roots = otherRoots
	_, err = Verify(body, ct, opts)
	wantCode(t, "cached certificate under other roots", err, soap.CodeBadCertificate)

	// The same roots again, after the refusal: still accepted.
	if _, err := Verify(body, ct, f.opts()); err != nil {
		t.Errorf("cached certificate under its own roots: %v", err)
	}

	// A certificate of the other CA naming the same member, under the
	// roots whose cache is warm.
	forged, err := otherCA.IssueSigning(client)
	if err != nil {
		t.Fatal(err)
	}
	b, c, err := (&Signer{Key: forged.Key, Cert: forged.Cert}).Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(b, c, f.opts())
	wantCode(t, "other CA's certificate under warm roots", err, soap.CodeBadCertificate)
	// And the other CA's certificate is accepted under its own roots, then
	// still refused under the first.
	if _, err := Verify(b, c, opts); err != nil {
		t.Errorf("other CA's certificate under its roots: %v", err)
	}
	_, err = Verify(b, c, f.opts())
	wantCode(t, "other CA's certificate after its own success", err,
		soap.CodeBadCertificate)
}

// A cache hit checks the validity period at now and at the signing time,
// and the member, as a miss does.
func TestChainCacheChecksOnHit(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	s := issue(t, f.ca, client.String(), x509.KeyUsageDigitalSignature,
		now.Add(-time.Hour), now.Add(time.Hour))
	body, ct, err := s.Sign(request, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(body, ct, f.opts()); err != nil {
		t.Fatal(err)
	}

	opts := f.opts()
	opts.Now = now.Add(2 * time.Hour)
	_, err = Verify(body, ct, opts)
	wantCode(t, "expired since it was cached", err, soap.CodeBadCertificate)

	early, earlyCT, err := s.Sign(request, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(early, earlyCT, f.opts())
	wantCode(t, "signed before the cached certificate was valid", err,
		soap.CodeBadCertificate)

	opts = f.opts()
	opts.Member = provider
	_, err = Verify(body, ct, opts)
	wantCode(t, "cached certificate of another member", err, soap.CodeSignerMismatch)

	// The returned chain is the caller's: changing it spoils no later
	// verification.
	v, err := Verify(body, ct, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	v.Chain[len(v.Chain)-1] = v.Chain[0]
	v2, err := Verify(body, ct, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if !v2.Chain[len(v2.Chain)-1].Equal(f.ca.Cert) {
		t.Error("a caller's change to Verified.Chain reached the cache")
	}
}

func TestChainCacheBounded(t *testing.T) {
	c := &chainCache{max: 3}
	for i := range 10 {
		c.put(chainKey{cert: [32]byte{byte(i)}}, [][]*x509.Certificate{nil})
		if c.len() > 3 {
			t.Fatalf("after %d puts the cache holds %d entries, over 3", i+1, c.len())
		}
	}
	if c.get(chainKey{cert: [32]byte{9}}) == nil {
		t.Error("the entry put last is not cached")
	}
}

func TestChainCacheConcurrent(t *testing.T) {
	f := newFixture(t)
	body, ct, err := f.signer.Sign(request, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if _, err := Verify(body, ct, f.opts()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
