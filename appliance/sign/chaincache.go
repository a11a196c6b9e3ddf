package sign

import (
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"
)

// maxCachedChains bounds the chain cache. A security server sees a few
// signing certificates per member it exchanges with; a thousand covers the
// whole of Appendix 1 several times over.
const maxCachedChains = 1024

// chains is the process's cache of verified signing-certificate chains.
var chains = &chainCache{max: maxCachedChains}

// chainKey names a chain verification: the signing certificate, by the
// SHA-256 of its DER, and the trust roots it was verified against. The
// pool is compared by identity: a new pool (a new global configuration)
// misses, so a certification centre that is no longer trusted is never
// accepted from the cache. Holding the pointer keeps the pool alive, so
// its address cannot be reused by another pool while the entry exists.
type chainKey struct {
	cert  [sha256.Size]byte
	roots *x509.CertPool
}

// chainCache holds, per chainKey, the chains x509.Certificate.Verify built
// for the certificate. What a hit saves is the certificates' signature
// checks and the chain building; the validity periods, the key usage, the
// member and the OCSP status are still checked for every message. It is
// bounded by max entries, emptied when full, and safe for concurrent use.
type chainCache struct {
	mu  sync.Mutex
	max int
	m   map[chainKey][][]*x509.Certificate
}

// get returns the chains cached for key, nil when there are none. The
// caller must not modify them.
func (c *chainCache) get(key chainKey) [][]*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

// put caches chains for key, emptying the cache first when it is full.
func (c *chainCache) put(key chainKey, chains [][]*x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= c.max {
		// Emptying is simpler than evicting in order and costs one
		// verification per certificate in use afterwards.
		c.m = make(map[chainKey][][]*x509.Certificate)
	}
	c.m[key] = chains
}

// len returns the number of entries, for tests.
func (c *chainCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// validChain returns the first of chains whose every certificate is valid
// at both now and the signing time, or nil.
func validChain(chains [][]*x509.Certificate, now, signingTime time.Time) []*x509.Certificate {
	for _, c := range chains {
		if validAt(c, now) && validAt(c, signingTime) {
			return c
		}
	}
	return nil
}
