package cms

import (
	"bytes"
	"testing"
)

// TestCertCache checks that a certificate parsed once is handed out again
// for the same DER, that other DER gets its own, that bad DER is refused
// and never cached, and that the cache starts afresh at its bound.
func TestCertCache(t *testing.T) {
	fx := newFixture(t)
	var c certCache
	a1, err := c.certificate(fx.signer.Cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.certificate(bytes.Clone(fx.signer.Cert.Raw))
	if err != nil || a2 != a1 {
		t.Errorf("second parse of the same DER = %p, %v; want the cached %p", a2, err, a1)
	}
	b, err := c.certificate(fx.other.Cert.Raw)
	if err != nil || b == a1 || !bytes.Equal(b.Raw, fx.other.Cert.Raw) {
		t.Errorf("another certificate = %v, %v; want its own parse", b, err)
	}
	bad := bytes.Clone(fx.signer.Cert.Raw[:len(fx.signer.Cert.Raw)-5])
	for range 2 {
		if _, err := c.certificate(bad); err == nil {
			t.Fatal("truncated DER parsed")
		}
	}
	if len(c.certs) != 2 {
		t.Errorf("cache holds %d certificates, want 2", len(c.certs))
	}

	for i := range maxCachedCerts {
		c.certs[[32]byte{byte(i), byte(i >> 8), 1}] = a1
	}
	if _, err := c.certificate(fx.ca.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	if len(c.certs) != 1 {
		t.Errorf("cache past its bound holds %d certificates, want 1 (started afresh)",
			len(c.certs))
	}
}
