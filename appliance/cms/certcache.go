package cms

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
)

// certCache keeps the certificates Verify parsed, by the SHA-256 of their
// DER: a security server receives the same few signing certificates in
// every message, and hashing one costs a small part of parsing it.
type certCache struct {
	mu    sync.Mutex
	certs map[[sha256.Size]byte]*x509.Certificate
}

// maxCachedCerts bounds the cache; past it the cache starts afresh, so
// that a sender of ever new certificates cannot make it grow.
const maxCachedCerts = 1024

// parsed is the cache Verify uses.
var parsed certCache

// certificate returns der parsed, from the cache when it was parsed
// before. The certificate returned may be shared with other callers.
func (c *certCache) certificate(der []byte) (*x509.Certificate, error) {
	k := sha256.Sum256(der)
	c.mu.Lock()
	cert := c.certs[k]
	c.mu.Unlock()
	if cert != nil {
		return cert, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.certs == nil || len(c.certs) >= maxCachedCerts {
		c.certs = make(map[[sha256.Size]byte]*x509.Certificate)
	}
	c.certs[k] = cert
	c.mu.Unlock()
	return cert, nil
}
