// Package ecverify checks ECDSA P-256 signatures as crypto/ecdsa.VerifyASN1
// does, about twice as fast for the public keys it meets often.
//
// A security server verifies every message of an exchange against the
// signing key of the member at the other end (clause 2.2.1), and a server
// talks to few members: the same handful of keys sign thousands of
// messages a second. Half of an ordinary verification is a scalar
// multiplication of that public key; for a key seen often, VerifyASN1
// computes a table of its multiples once and replaces those 256 doublings
// with 43 table additions.
//
// Everything this package touches is public (the key, the digest, the
// signature), so it computes in variable time. It accepts exactly what
// crypto/ecdsa.VerifyASN1 accepts; the tests compare the two on valid,
// altered and malformed signatures.
package ecverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"math/big"
	"sync"

	"filippo.io/nistec"
	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

const (
	// buildAfter is how many verifications of a key VerifyASN1 does the
	// ordinary way before it builds the key's table, which costs about as
	// much as eight verifications.
	buildAfter = 8
	// maxTables bounds the keys with a table: each takes 132 KiB.
	maxTables = 16
	// maxCounted bounds the keys whose verifications are being counted.
	maxCounted = 256
)

// VerifyASN1 reports whether sig, an ASN.1 DER ECDSA signature, is a valid
// signature of hash by pub. It accepts and refuses exactly what
// crypto/ecdsa.VerifyASN1 does; keys other than P-256 are passed to it.
// A nil key verifies nothing. It is safe for concurrent use.
func VerifyASN1(pub *ecdsa.PublicKey, hash, sig []byte) bool {
	if pub == nil {
		return false
	}
	if pub.Curve != elliptic.P256() {
		return ecdsa.VerifyASN1(pub, hash, sig)
	}
	point, err := pub.Bytes()
	if err != nil {
		return false
	}
	t := tables.lookup(string(point))
	if t == nil {
		return ecdsa.VerifyASN1(pub, hash, sig)
	}
	return t.verify(hash, sig)
}

// tables is the process's cache: the keys a server meets are the same
// whichever of its components verifies.
var tables = &cache{entries: map[string]*entry{}}

type cache struct {
	mu      sync.Mutex
	entries map[string]*entry
	built   int    // entries with a table
	clock   uint64 // counts lookups, to find the least recently used table
}

type entry struct {
	uses     int
	lastUse  uint64
	table    *table
	building bool
}

// lookup returns the key's table, building it on the key's buildAfter-th
// use; nil means "verify the ordinary way".
func (c *cache) lookup(point string) *table {
	c.mu.Lock()
	c.clock++
	e := c.entries[point]
	if e == nil {
		if len(c.entries)-c.built >= maxCounted {
			c.forgetCounts()
		}
		e = &entry{}
		c.entries[point] = e
	}
	e.uses++
	e.lastUse = c.clock
	if e.table != nil || e.building || e.uses < buildAfter {
		t := e.table
		c.mu.Unlock()
		return t
	}
	e.building = true
	c.mu.Unlock()

	t, err := newTable([]byte(point))

	c.mu.Lock()
	defer c.mu.Unlock()
	e.building = false
	if err != nil || c.entries[point] != e {
		// Not a point of the curve (ecdsa refuses it too), or forgotten
		// while it was built.
		return nil
	}
	if c.built >= maxTables {
		c.evictOldest()
	}
	e.table = t
	c.built++
	return t
}

// forgetCounts drops the keys without a table; c.mu is held.
func (c *cache) forgetCounts() {
	for k, e := range c.entries {
		if e.table == nil && !e.building {
			delete(c.entries, k)
		}
	}
}

// evictOldest drops the least recently used table; c.mu is held.
func (c *cache) evictOldest() {
	var oldest string
	var at uint64
	found := false
	for k, e := range c.entries {
		if e.table != nil && (!found || e.lastUse < at) {
			oldest, at, found = k, e.lastUse, true
		}
	}
	if found {
		delete(c.entries, oldest)
		c.built--
	}
}

// windows is the number of 6-bit digits of a signed-digit scalar below the
// group order.
const windows = 43

// table holds j·2^(6i)·Q for every window i and digit j in 1..32.
type table [windows][32]nistec.P256Point

// order is the order n of the P-256 group.
var order, _ = new(big.Int).SetString(
	"ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)

// newTable computes the table of the uncompressed point q.
func newTable(q []byte) (*table, error) {
	base, err := nistec.NewP256Point().SetBytes(q)
	if err != nil {
		return nil, err
	}
	t := new(table)
	for i := range t {
		t[i][0].Set(base)
		for j := 1; j < len(t[i]); j++ {
			t[i][j].Add(&t[i][j-1], base)
		}
		for range 6 {
			base.Double(base)
		}
	}
	return t, nil
}

// mul returns k·Q for a 32-byte big-endian k below the group order. It
// writes k in signed 6-bit digits d (-32 < d <= 32) and adds d·2^(6i)·Q
// from the table for every digit that is not zero.
func (t *table) mul(k *[32]byte) *nistec.P256Point {
	bit := func(i int) int {
		if i >= 256 {
			return 0
		}
		return int(k[31-i/8]>>(i%8)) & 1
	}
	acc := nistec.NewP256Point()
	var neg nistec.P256Point
	carry := 0
	for i := range windows {
		d := carry
		for b := range 6 {
			d += bit(6*i+b) << b
		}
		carry = 0
		if d > 32 {
			d -= 64
			carry = 1
		}
		switch {
		case d > 0:
			acc.Add(acc, &t[i][d-1])
		case d < 0:
			acc.Add(acc, neg.Negate(&t[i][-d-1]))
		}
	}
	// k < n < 2^256 leaves the top window at most 16: no carry is left.
	return acc
}

// verify checks sig over hash as FIPS 186-5, 6.4.2 says, with Q's table.
func (t *table) verify(hash, sig []byte) bool {
	rBytes, sBytes, ok := parseSignature(sig)
	if !ok {
		return false
	}
	r, s := new(big.Int).SetBytes(rBytes), new(big.Int).SetBytes(sBytes)
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(order) >= 0 || s.Cmp(order) >= 0 {
		return false
	}

	// e is the leftmost 256 bits of the hash.
	if len(hash) > 32 {
		hash = hash[:32]
	}
	e := new(big.Int).SetBytes(hash)
	w := new(big.Int).ModInverse(s, order)
	u1 := e.Mul(e, w)
	u1.Mod(u1, order)
	u2 := w.Mul(r, w)
	u2.Mod(u2, order)

	var u1Bytes, u2Bytes [32]byte
	u1.FillBytes(u1Bytes[:])
	u2.FillBytes(u2Bytes[:])
	p, err := nistec.NewP256Point().ScalarBaseMult(u1Bytes[:])
	if err != nil {
		return false
	}
	p.Add(p, t.mul(&u2Bytes))

	// BytesX refuses the point at infinity.
	x, err := p.BytesX()
	if err != nil {
		return false
	}
	v := new(big.Int).SetBytes(x)
	if v.Cmp(order) >= 0 {
		v.Sub(v, order)
	}
	return v.Cmp(r) == 0
}

// parseSignature reads the DER SEQUENCE of two INTEGERs the way
// crypto/ecdsa does: minimal encodings, no negative numbers, nothing after.
func parseSignature(sig []byte) (r, s []byte, ok bool) {
	var inner cryptobyte.String
	input := cryptobyte.String(sig)
	if !input.ReadASN1(&inner, asn1.SEQUENCE) || !input.Empty() ||
		!inner.ReadASN1Integer(&r) || !inner.ReadASN1Integer(&s) || !inner.Empty() {
		return nil, nil, false
	}
	return r, s, true
}
