package messagelog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qapi-az/qapi/appliance/timestamp"
	"github.com/qapi-az/qapi/internal/testpki"
)

// localTSA stamps in process with timestamp.Issue, and fails on demand.
type localTSA struct {
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	roots  *x509.CertPool
	serial atomic.Int64
	down   atomic.Bool
}

var errTSADown = errors.New("TSA unreachable (test)")

func newLocalTSA(t testing.TB) *localTSA {
	t.Helper()
	ca, err := testpki.NewCA("log test TSA CA")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "log test TSA"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &localTSA{key: key, cert: cert, roots: roots}
}

func (s *localTSA) Stamp(ctx context.Context, digest []byte) ([]byte, error) {
	if s.down.Load() {
		return nil, errTSADown
	}
	req, nonce, err := timestamp.NewRequest(digest)
	if err != nil {
		return nil, err
	}
	resp, err := timestamp.Issue(req, s.key, s.cert, time.Now(), big.NewInt(s.serial.Add(1)))
	if err != nil {
		return nil, err
	}
	tok, err := timestamp.VerifyResponse(resp, digest, nonce, s.roots)
	if err != nil {
		return nil, err
	}
	return tok.DER, nil
}

// clock is a settable time for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestStampsCoverTheChain: each stamp covers the entries since the one
// before and its token verifies against the hash of its last entry.
func TestStampsCoverTheChain(t *testing.T) {
	tsa := newLocalTSA(t)
	path := filepath.Join(t.TempDir(), "log.db")
	key := testKey(t)
	l, err := Open(Options{Path: path, Key: key, Stamper: tsa, StampInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 3)
	if err := l.StampNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 3, 2)
	if err := l.StampNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.StampNow(context.Background()); err != nil { // nothing new: no stamp
		t.Fatal(err)
	}
	l.Close()

	l, err = Open(Options{Path: path, Key: key, Stamper: tsa, StampInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st := l.State(); st.Stamped != 5 {
		t.Fatalf("Stamped = %d after reopen, want 5", st.Stamped)
	}
	stamps, err := l.Stamps(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(stamps) != 2 || stamps[0].First != 1 || stamps[0].Last != 3 ||
		stamps[1].First != 4 || stamps[1].Last != 5 {
		t.Fatalf("stamps cover %+v, want 1-3 and 4-5", stamps)
	}
	hashes := map[uint64]Hash{}
	l.Entries(0, 0, func(e *Entry) error { hashes[e.Seq] = e.Hash(); return nil })
	for _, s := range stamps {
		h := hashes[s.Last]
		if _, err := timestamp.VerifyToken(s.Token, h[:], tsa.roots); err != nil {
			t.Fatalf("stamp over entry %d: %v", s.Last, err)
		}
	}
}

// TestStampFailureBlocksAndRecovers: while the TSA is down past the grace,
// Append refuses with ErrTimestampFailure; once a stamp succeeds it accepts
// again by itself.
func TestStampFailureBlocksAndRecovers(t *testing.T) {
	tsa := newLocalTSA(t)
	clk := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "log.db"), Key: testKey(t),
		Stamper: tsa, StampInterval: time.Hour, StampGrace: 5 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	tsa.down.Store(true)
	appendN(t, l, 0, 2)
	if err := l.StampNow(ctx); !errors.Is(err, errTSADown) {
		t.Fatalf("StampNow with the TSA down = %v", err)
	}
	clk.Add(4 * time.Minute)
	appendN(t, l, 2, 1) // within the grace: still accepted
	clk.Add(2 * time.Minute)
	err = l.Append(ctx, testRecord(3))
	if !errors.Is(err, ErrTimestampFailure) || !errors.Is(err, errTSADown) {
		t.Fatalf("Append past the grace = %v, want ErrTimestampFailure wrapping the cause", err)
	}
	if st := l.State(); st.Head != 3 {
		t.Fatalf("head %d after a refused Append, want 3", st.Head)
	}

	tsa.down.Store(false)
	if err := l.StampNow(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, testRecord(3)); err != nil {
		t.Fatalf("Append after the TSA came back = %v", err)
	}
	if st := l.State(); st.Head != 4 || st.Stamped != 3 {
		t.Fatalf("state %+v, want head 4 stamped 3", st)
	}
}

// blockingTSA never answers until its context ends.
type blockingTSA struct{ called chan struct{} }

func (b *blockingTSA) Stamp(ctx context.Context, digest []byte) ([]byte, error) {
	select {
	case b.called <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCloseCancelsStamp: Close does not wait for a TSA that does not
// answer; it cancels the request under way.
func TestCloseCancelsStamp(t *testing.T) {
	tsa := &blockingTSA{called: make(chan struct{}, 1)}
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "log.db"), Key: testKey(t),
		Stamper: tsa, StampInterval: time.Millisecond, StampTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 1)
	<-tsa.called
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestStampLoopRecovers: without any call to StampNow, the log's own
// stamping loop stops Append past the grace while the TSA is down and
// lets it through again once the TSA answers.
func TestStampLoopRecovers(t *testing.T) {
	tsa := newLocalTSA(t)
	tsa.down.Store(true)
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "log.db"), Key: testKey(t),
		Stamper: tsa, StampInterval: 10 * time.Millisecond,
		StampGrace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	within := func(what string, ok func(err error) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			err := l.Append(ctx, testRecord(i))
			if ok(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the last Append gave %v", what, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	within("Append to stop while the TSA is down", func(err error) bool {
		return errors.Is(err, ErrTimestampFailure)
	})
	tsa.down.Store(false)
	within("Append to resume by itself", func(err error) bool { return err == nil })
	if st := l.State(); st.Stamped == 0 {
		t.Fatalf("state %+v: no stamp taken after the TSA came back", st)
	}
}
