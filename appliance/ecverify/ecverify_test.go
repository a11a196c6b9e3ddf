package ecverify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"math/big"
	"sync"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// fixture is a key, its table and one signature of a SHA-256 digest.
type fixture struct {
	key  *ecdsa.PrivateKey
	tab  *table
	hash []byte
	sig  []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	point, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := newTable(point)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("a SOAP message's signed attributes"))
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{key: key, tab: tab, hash: h[:], sig: sig}
}

// agree fails the test when the table and crypto/ecdsa disagree on
// (hash, sig) and returns the verdict.
func (f *fixture) agree(t testing.TB, what string, hash, sig []byte) bool {
	t.Helper()
	want := ecdsa.VerifyASN1(&f.key.PublicKey, hash, sig)
	if got := f.tab.verify(hash, sig); got != want {
		t.Fatalf("%s: table says %v, crypto/ecdsa says %v (hash %x, sig %x)",
			what, got, want, hash, sig)
	}
	return want
}

func encode(r, s *big.Int) []byte {
	var b cryptobyte.Builder
	b.AddASN1(asn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1BigInt(r)
		b.AddASN1BigInt(s)
	})
	return b.BytesOrPanic()
}

func decode(t testing.TB, sig []byte) (r, s *big.Int) {
	t.Helper()
	rb, sb, ok := parseSignature(sig)
	if !ok {
		t.Fatalf("cannot parse %x", sig)
	}
	return new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
}

func TestAgreesOnRandomSignatures(t *testing.T) {
	f := newFixture(t)
	for i := range 500 {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		sig, err := ecdsa.SignASN1(rand.Reader, f.key, h[:])
		if err != nil {
			t.Fatal(err)
		}
		if !f.agree(t, "valid", h[:], sig) {
			t.Fatal("a fresh signature did not verify")
		}
		bad := append([]byte(nil), h[:]...)
		bad[i%32] ^= 1 << (i % 8)
		if f.agree(t, "altered hash", bad, sig) {
			t.Fatal("a signature verified over another hash")
		}
		badSig := append([]byte(nil), sig...)
		badSig[len(badSig)-1-i%30] ^= 1 << (i % 8)
		f.agree(t, "altered signature", h[:], badSig)
	}
}

func TestAgreesOnEdgeScalars(t *testing.T) {
	f := newFixture(t)
	r, s := decode(t, f.sig)
	n := order
	one := big.NewInt(1)
	minus := func(a, b *big.Int) *big.Int { return new(big.Int).Sub(a, b) }
	plus := func(a, b *big.Int) *big.Int { return new(big.Int).Add(a, b) }
	cases := []struct {
		name string
		r, s *big.Int
		want bool
	}{
		{"as signed", r, s, true},
		{"s negated mod n", r, minus(n, s), true}, // ECDSA is malleable
		{"r zero", big.NewInt(0), s, false},
		{"s zero", r, big.NewInt(0), false},
		{"r is n", n, s, false},
		{"s is n", r, n, false},
		{"r plus n", plus(r, n), s, false},
		{"s plus n", r, plus(s, n), false},
		{"r n-1", minus(n, one), s, false},
		{"s one", r, one, false},
		{"r and s swapped", s, r, false},
		{"r past 2^256", new(big.Int).Lsh(one, 256), s, false},
	}
	for _, c := range cases {
		if got := f.agree(t, c.name, f.hash, encode(c.r, c.s)); got != c.want {
			t.Errorf("%s: verified %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAgreesOnMalformedEncodings(t *testing.T) {
	f := newFixture(t)
	r, s := decode(t, f.sig)
	rb, sb := r.Bytes(), s.Bytes()
	integer := func(b []byte) []byte { return append([]byte{0x02, byte(len(b))}, b...) }
	seq := func(parts ...[]byte) []byte {
		var body []byte
		for _, p := range parts {
			body = append(body, p...)
		}
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	padded := func(b []byte) []byte { return append([]byte{0, 0}, b...) }
	cases := map[string][]byte{
		"empty":             nil,
		"trailing byte":     append(append([]byte(nil), f.sig...), 0),
		"one integer":       seq(integer(rb)),
		"three integers":    seq(integer(rb), integer(sb), integer([]byte{1})),
		"non-minimal r":     seq(integer(padded(rb)), integer(sb)),
		"negative s":        seq(integer(rb), integer([]byte{0x80 | sb[0]})),
		"wrong outer tag":   append([]byte{0x31}, f.sig[1:]...),
		"truncated":         f.sig[:len(f.sig)-1],
		"empty integer":     seq([]byte{0x02, 0}, integer(sb)),
		"bit string for s":  seq(integer(rb), append([]byte{0x03, byte(len(sb))}, sb...)),
		"just the sequence": {0x30, 0},
	}
	for name, sig := range cases {
		if f.agree(t, name, f.hash, sig) {
			t.Errorf("%s: a malformed signature verified", name)
		}
	}
}

func TestAgreesOnHashLengths(t *testing.T) {
	f := newFixture(t)
	long := sha512.Sum512([]byte("message"))
	for _, h := range [][]byte{nil, {1}, long[:20], long[:31], long[:32], long[:48], long[:]} {
		sig, err := ecdsa.SignASN1(rand.Reader, f.key, h)
		if err != nil {
			t.Fatal(err)
		}
		if !f.agree(t, "hash length", h, sig) {
			t.Errorf("a %d-byte hash's signature did not verify", len(h))
		}
	}
	// A hash equal to the group order reduces to zero: u1 = 0.
	zero := order.Bytes()
	sig, err := ecdsa.SignASN1(rand.Reader, f.key, zero)
	if err != nil {
		t.Fatal(err)
	}
	if !f.agree(t, "hash n", zero, sig) {
		t.Error("the signature of a hash equal to n did not verify")
	}
}

func TestMultipliesLikeNistec(t *testing.T) {
	f := newFixture(t)
	pub := &f.key.PublicKey
	n1 := new(big.Int).Sub(order, big.NewInt(1))
	scalars := []*big.Int{big.NewInt(1), big.NewInt(31), big.NewInt(32), big.NewInt(33),
		big.NewInt(63), big.NewInt(64), n1, new(big.Int).Rsh(n1, 1)}
	for range 50 {
		k, err := rand.Int(rand.Reader, order)
		if err != nil {
			t.Fatal(err)
		}
		scalars = append(scalars, k)
	}
	for _, k := range scalars {
		var kb [32]byte
		k.FillBytes(kb[:])
		wantX, wantY := elliptic.P256().ScalarMult(pub.X, pub.Y, kb[:]) //nolint:staticcheck
		got := f.tab.mul(&kb).Bytes()
		want := elliptic.Marshal(elliptic.P256(), wantX, wantY) //nolint:staticcheck
		if string(got) != string(want) {
			t.Fatalf("k = %x: table gives %x, want %x", kb, got, want)
		}
	}
}

func TestVerifyASN1BuildsTablesForKeysSeenOften(t *testing.T) {
	tables = &cache{entries: map[string]*entry{}}
	f := newFixture(t)
	pub := &f.key.PublicKey
	point, _ := pub.Bytes()
	for i := range buildAfter + 2 {
		if !VerifyASN1(pub, f.hash, f.sig) {
			t.Fatalf("verification %d refused a valid signature", i+1)
		}
		if VerifyASN1(pub, f.hash[1:], f.sig) {
			t.Fatalf("verification %d accepted a wrong hash", i+1)
		}
		if has := tables.entries[string(point)].table != nil; has != (2*i+2 >= buildAfter) {
			t.Fatalf("after %d uses the table exists: %v", 2*i+2, has)
		}
	}

	// Other curves pass through to crypto/ecdsa.
	k384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, k384, f.hash)
	if err != nil {
		t.Fatal(err)
	}
	for range buildAfter + 1 {
		if !VerifyASN1(&k384.PublicKey, f.hash, sig) {
			t.Fatal("a P-384 signature did not verify")
		}
	}
	if len(tables.entries) != 1 {
		t.Fatalf("%d keys counted, want only the P-256 one", len(tables.entries))
	}
	if VerifyASN1(nil, f.hash, f.sig) {
		t.Fatal("a nil key verified")
	}
}

func TestCacheStaysBounded(t *testing.T) {
	tables = &cache{entries: map[string]*entry{}}
	var keys []*fixture
	for range maxTables + 3 {
		keys = append(keys, newFixture(t))
	}
	for _, f := range keys {
		for range buildAfter {
			if !VerifyASN1(&f.key.PublicKey, f.hash, f.sig) {
				t.Fatal("a valid signature was refused")
			}
		}
	}
	if tables.built != maxTables {
		t.Fatalf("%d tables kept, want the bound %d", tables.built, maxTables)
	}
	// The oldest keys lost their tables and still verify.
	first := keys[0]
	if !VerifyASN1(&first.key.PublicKey, first.hash, first.sig) {
		t.Fatal("an evicted key's signature was refused")
	}

	for range maxCounted + 10 {
		k := newFixture(t)
		VerifyASN1(&k.key.PublicKey, k.hash, k.sig)
	}
	if counted := len(tables.entries) - tables.built; counted > maxCounted {
		t.Fatalf("%d keys counted, want at most %d", counted, maxCounted)
	}
}

func TestConcurrentUse(t *testing.T) {
	tables = &cache{entries: map[string]*entry{}}
	f := newFixture(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 3 * buildAfter {
				if !VerifyASN1(&f.key.PublicKey, f.hash, f.sig) {
					t.Error("a valid signature was refused")
					return
				}
			}
		})
	}
	wg.Wait()
}

// FuzzAgreesWithECDSA compares the table with crypto/ecdsa on arbitrary
// signatures, hashes and single-byte alterations of a valid signature.
func FuzzAgreesWithECDSA(f *testing.F) {
	fx := newFixture(f)
	f.Add(fx.hash, fx.sig, uint8(0), uint8(0))
	f.Add([]byte{}, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01}, uint8(3), uint8(1))
	f.Fuzz(func(t *testing.T, hash, sig []byte, at, flip uint8) {
		fx.agree(t, "fuzzed", hash, sig)
		valid := append([]byte(nil), fx.sig...)
		valid[int(at)%len(valid)] ^= flip
		fx.agree(t, "altered", fx.hash, valid)
	})
}

func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	b.Run("crypto-ecdsa", func(b *testing.B) {
		for b.Loop() {
			if !ecdsa.VerifyASN1(&f.key.PublicKey, f.hash, f.sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("table", func(b *testing.B) {
		for b.Loop() {
			if !f.tab.verify(f.hash, f.sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("VerifyASN1", func(b *testing.B) {
		for b.Loop() {
			if !VerifyASN1(&f.key.PublicKey, f.hash, f.sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("build-table", func(b *testing.B) {
		point, _ := f.key.PublicKey.Bytes()
		for b.Loop() {
			if _, err := newTable(point); err != nil {
				b.Fatal(err)
			}
		}
	})
}
