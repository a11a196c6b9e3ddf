package messagelog

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func testKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testRecord(i int) Record {
	return Record{
		Kind:        KindRequest,
		MessageID:   fmt.Sprintf("msg-%d", i),
		Client:      "AZ/GOV/1234567890/sys",
		Service:     "AZ/GOV/9876543210/reg/getPerson/v1",
		Time:        time.Date(2026, 12, 3, 12, 0, 0, i, time.UTC),
		ContentType: "multipart/signed; boundary=b",
		Signed:      []byte(fmt.Sprintf("--b\r\n<soap>body %d</soap>\r\n--b--\r\n", i)),
	}
}

func openTest(t testing.TB, path string, key []byte) *Log {
	t.Helper()
	l, err := Open(Options{Path: path, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t testing.TB, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func collect(t testing.TB, l *Log) []*Entry {
	t.Helper()
	var es []*Entry
	if err := l.Entries(0, 0, func(e *Entry) error { es = append(es, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return es
}

// TestDurableAcrossReopen: what Append acknowledged is there after Close and
// Open, byte for byte, and the chain continues where it stopped.
func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	key := testKey(t)
	l := openTest(t, path, key)
	appendN(t, l, 0, 10)
	st1 := l.State()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), testRecord(99)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	l = openTest(t, path, key)
	defer l.Close()
	if st := l.State(); st != st1 {
		t.Fatalf("state after reopen %+v, want %+v", st, st1)
	}
	appendN(t, l, 10, 5)
	es := collect(t, l)
	if len(es) != 15 {
		t.Fatalf("%d entries, want 15", len(es))
	}
	for i, e := range es {
		want := testRecord(i)
		if e.Seq != uint64(i+1) || e.MessageID != want.MessageID ||
			!bytes.Equal(e.Signed, want.Signed) || !e.Time.Equal(want.Time) ||
			e.ContentType != want.ContentType || e.Kind != want.Kind {
			t.Fatalf("entry %d = %+v, want %+v", i+1, e, want)
		}
	}
	if es[10].Prev != es[9].Hash() {
		t.Fatal("the chain does not continue across the reopen")
	}
	if n, err := l.Verify(); err != nil || n != 15 {
		t.Fatalf("Verify = %d, %v; want 15, nil", n, err)
	}
}

func TestWrongKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l := openTest(t, path, testKey(t))
	appendN(t, l, 0, 1)
	l.Close()
	if _, err := Open(Options{Path: path, Key: testKey(t)}); err == nil {
		t.Fatal("Open with another key succeeded")
	}
	if _, err := Open(Options{Path: path, Key: make([]byte, 16)}); err == nil {
		t.Fatal("Open with a 16-byte key succeeded")
	}
}

// TestEncryptedAtRest: clause 6.3, the file holds no plaintext of a message
// nor of its metadata.
func TestEncryptedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	l := openTest(t, path, testKey(t))
	marker := "MARKER-7f3a9c-plaintext-must-not-appear"
	rec := testRecord(1)
	rec.Signed = []byte("--b\r\n<soap>" + marker + "</soap>\r\n--b--")
	rec.MessageID = "ID-" + marker
	rec.Client = "CLIENT-" + marker
	if err := l.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	l.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(marker)) {
		t.Fatal("the log file holds the marker in plaintext")
	}
	if !bytes.Contains(raw, []byte("records")) {
		t.Fatal("the check reads the wrong file: bucket names not found")
	}
}

// TestConcurrentAppend: many goroutines append at once; every record is
// stored once, the chain verifies, and group commit put several records in
// one transaction, under each way of bounding a group.
func TestConcurrentAppend(t *testing.T) {
	tests := []struct {
		name     string
		maxBatch int
		maxDelay time.Duration
	}{
		{"defaults", 0, 0},
		{"small batches", 4, 0},
		{"waiting for more", 64, 2 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(Options{Path: filepath.Join(t.TempDir(), "log.db"),
				Key: testKey(t), MaxBatch: tt.maxBatch, MaxDelay: tt.maxDelay})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			const goroutines, each = 32, 20
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						err := l.Append(context.Background(), testRecord(g*each+i))
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, e := range collect(t, l) {
				if seen[e.MessageID] {
					t.Fatalf("%s stored twice", e.MessageID)
				}
				seen[e.MessageID] = true
			}
			if len(seen) != goroutines*each {
				t.Fatalf("%d records stored, want %d", len(seen), goroutines*each)
			}
			if _, err := l.Verify(); err != nil {
				t.Fatal(err)
			}
			var txs int
			l.db.View(func(tx *bolt.Tx) error { txs = tx.ID(); return nil })
			if txs >= goroutines*each {
				t.Fatalf("%d transactions for %d records: no group commit", txs,
					goroutines*each)
			}
		})
	}
}

// TestTamper: every alteration of the file made without the key, and every
// alteration of the chain made with it, is found and named by entry.
func TestTamper(t *testing.T) {
	tests := []struct {
		name    string
		alter   func(tx *bolt.Tx, s *sealer) error
		wantSeq uint64
	}{
		{"flip a byte", func(tx *bolt.Tx, s *sealer) error {
			b := holder(tx.Bucket(bucketRecords), 3)
			v := append([]byte(nil), b.Get(seqKey(3))...)
			v[len(v)/2] ^= 1
			return b.Put(seqKey(3), v)
		}, 3},
		{"swap two entries", func(tx *bolt.Tx, s *sealer) error {
			b3 := holder(tx.Bucket(bucketRecords), 3)
			b4 := holder(tx.Bucket(bucketRecords), 4)
			v3 := append([]byte(nil), b3.Get(seqKey(3))...)
			v4 := append([]byte(nil), b4.Get(seqKey(4))...)
			if err := b3.Put(seqKey(3), v4); err != nil {
				return err
			}
			return b4.Put(seqKey(4), v3)
		}, 3},
		{"delete an entry", func(tx *bolt.Tx, s *sealer) error {
			return holder(tx.Bucket(bucketRecords), 2).Delete(seqKey(2))
		}, 2},
		{"rewrite a body with the key", func(tx *bolt.Tx, s *sealer) error {
			return reseal(tx, s, 2, func(e *Entry) { e.Signed = []byte("forged") })
		}, 3},
		{"rewrite the last entry with the key", func(tx *bolt.Tx, s *sealer) error {
			return reseal(tx, s, 5, func(e *Entry) { e.MessageID = "forged" })
		}, 5},
		{"truncate the tail", func(tx *bolt.Tx, s *sealer) error {
			return holder(tx.Bucket(bucketRecords), 5).Delete(seqKey(5))
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			key := testKey(t)
			l := openTest(t, path, key)
			appendN(t, l, 0, 5)
			if _, err := l.Verify(); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			l.Close()

			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := newSealer(key)
			if err := db.Update(func(tx *bolt.Tx) error { return tt.alter(tx, s) }); err != nil {
				t.Fatal(err)
			}
			db.Close()

			l = openTest(t, path, key)
			defer l.Close()
			_, err = l.Verify()
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("Verify = %v, want a *CorruptError", err)
			}
			if ce.Seq != tt.wantSeq || ce.Where != path {
				t.Fatalf("Verify names %s entry %d (%v), want %s entry %d",
					ce.Where, ce.Seq, err, path, tt.wantSeq)
			}
		})
	}
}

func reseal(tx *bolt.Tx, s *sealer, seq uint64, change func(*Entry)) error {
	b := holder(tx.Bucket(bucketRecords), seq)
	plain, err := s.open(bucketRecords, seqKey(seq), b.Get(seqKey(seq)))
	if err != nil {
		return err
	}
	e, err := decodeStored(plain)
	if err != nil {
		return err
	}
	change(e)
	e.SignedSHA256 = Hash{}
	v, err := s.seal(bucketRecords, seqKey(seq), encodeStored(e))
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), v)
}

func TestStoredRoundTrip(t *testing.T) {
	e := Entry{Seq: 42, Record: testRecord(7)}
	e.Prev[0], e.Prev[31] = 1, 2
	got, err := decodeStored(encodeStored(&e))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Canonical(), e.Canonical()) || got.Hash() != e.Hash() ||
		!bytes.Equal(got.Signed, e.Signed) {
		t.Fatalf("round trip changed the entry: %+v", got)
	}
	// Metadata and the body's digest alone give the same hash.
	meta := *got
	meta.Signed = nil
	if meta.Hash() != e.Hash() {
		t.Fatal("the hash of an entry without its body differs")
	}
	c := encodeStored(&e)
	bodyAt := bytes.Index(c, e.Signed)
	flipped := bytes.Clone(c)
	flipped[bodyAt] ^= 1
	for _, bad := range [][]byte{c[:len(c)-1], append(bytes.Clone(c), 0), c[1:], flipped} {
		if _, err := decodeStored(bad); err == nil {
			t.Fatal("decodeStored accepted a damaged encoding")
		}
	}
}

// TestDamagedFile: a bbolt file damaged below the entries (garbage pages)
// gives an error naming the file, from Open or from Verify, and no panic.
func TestDamagedFile(t *testing.T) {
	tests := []struct {
		name string
		page func(pages int64) (from, n int64)
		// mayBeFree is set where the damaged page may hold no live data;
		// elsewhere a damage that goes unnoticed fails the test.
		mayBeFree bool
	}{
		{"every data page", func(p int64) (int64, int64) { return 4, p - 4 }, false},
		{"one page in the middle", func(p int64) (int64, int64) { return p / 2, 1 }, true},
		{"the pages after the meta pages", func(p int64) (int64, int64) { return 2, 2 },
			false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log.db")
			key := testKey(t)
			l := openTest(t, path, key)
			var recs []Record
			for i := range 200 {
				r := testRecord(i)
				r.Signed = bytes.Repeat([]byte{'x'}, 1000)
				recs = append(recs, r)
			}
			if err := l.Append(context.Background(), recs...); err != nil {
				t.Fatal(err)
			}
			l.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			ps := int64(os.Getpagesize())
			from, n := tt.page(fi.Size() / ps)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte{0xa5}, int(n*ps))
			if _, err := f.WriteAt(junk, from*ps); err != nil {
				t.Fatal(err)
			}
			f.Close()

			l, err = Open(Options{Path: path, Key: key})
			if err == nil {
				_, err = l.Verify()
				l.Close()
			}
			if err == nil && tt.mayBeFree {
				// The page may have been free; then nothing was lost.
				t.Skipf("pages %d+%d held no live data", from, n)
			}
			if err == nil {
				t.Fatalf("pages %d+%d overwritten, yet Open and Verify found nothing",
					from, n)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v does not name %s", err, path)
			}
		})
	}
}

// TestLoneAppendNotDelayed: MaxDelay holds a commit back only while commits
// are shared; one caller appending alone never waits for company. With an
// hour's MaxDelay, the appends below would outlast their deadline if it
// did.
func TestLoneAppendNotDelayed(t *testing.T) {
	l, err := Open(Options{Path: filepath.Join(t.TempDir(), "log.db"), Key: testKey(t),
		MaxDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 5 {
		if err := l.Append(ctx, testRecord(i)); err != nil {
			t.Fatalf("append %d alone: %v; a lone caller waited for others", i, err)
		}
	}
	if st := l.State(); st.Head != 5 {
		t.Fatalf("head %d after five appends, want 5", st.Head)
	}
}
