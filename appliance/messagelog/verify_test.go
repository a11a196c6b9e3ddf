package messagelog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// appendBatches appends n records in batches of 500.
func appendBatches(t testing.TB, l *Log, n int, size int) {
	t.Helper()
	var recs []Record
	for i := range n {
		r := testRecord(i)
		if size > 0 {
			r.Signed = make([]byte, size)
		}
		recs = append(recs, r)
		if len(recs) == 500 || i == n-1 {
			if err := l.Append(context.Background(), recs...); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
}

// TestVerifyAcrossChunks: a damaged entry in a later chunk is named by its
// number, as are the entries before it checked.
func TestVerifyAcrossChunks(t *testing.T) {
	defer func(c uint64) { verifyChunk = c }(verifyChunk)
	verifyChunk = 64
	path := filepath.Join(t.TempDir(), "log.db")
	key := testKey(t)
	l := openTest(t, path, key)
	appendBatches(t, l, 1000, 0)
	if n, err := l.Verify(); err != nil || n != 1000 {
		t.Fatalf("Verify = %d, %v; want 1000 entries", n, err)
	}
	l.Close()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newSealer(key)
	err = db.Update(func(tx *bolt.Tx) error {
		return reseal(tx, s, 700, func(e *Entry) { e.MessageID = "forged" })
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	l = openTest(t, path, key)
	defer l.Close()
	n, err := l.Verify()
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Seq != 701 || ce.Where != path || n != 700 {
		t.Fatalf("Verify = %d, %v; want entry 701 named after 700 checked", n, err)
	}
}

// TestVerifyWhileArchiving: entries removed by the archiver while Verify
// runs are not reported as missing; Verify goes on from the new archive
// position.
func TestVerifyWhileArchiving(t *testing.T) {
	defer func(c uint64) { verifyChunk = c }(verifyChunk)
	verifyChunk = 3
	l := openTest(t, filepath.Join(t.TempDir(), "log.db"), testKey(t))
	defer l.Close()
	appendBatches(t, l, 2000, 0)
	hashes := map[uint64]Hash{}
	l.Entries(0, 0, func(e *Entry) error { hashes[e.Seq] = e.Hash(); return nil })

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(10); seq <= 2000; seq += 10 {
			if err := l.Remove(seq, hashes[seq]); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	runs := 0
	for st := l.State(); st.Archived < st.Head; st = l.State() {
		if _, err := l.Verify(); err != nil {
			t.Fatalf("Verify while archiving, at archive position %d: %v", st.Archived, err)
		}
		runs++
	}
	wg.Wait()
	t.Logf("%d runs of Verify while entries were removed", runs)
}

// TestVerifyEvery runs at once and again every interval until the context
// ends.
func TestVerifyEvery(t *testing.T) {
	l := openTest(t, filepath.Join(t.TempDir(), "log.db"), testKey(t))
	defer l.Close()
	appendN(t, l, 0, 3)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan int, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.VerifyEvery(ctx, time.Millisecond, func(n int, err error) {
			if err != nil {
				t.Error(err)
			}
			select {
			case got <- n:
			default:
			}
		})
	}()
	for range 3 {
		if n := <-got; n != 3 {
			t.Fatalf("VerifyEvery reported %d entries, want 3", n)
		}
	}
	cancel()
	<-done
}

// BenchmarkVerify100k measures Verify over a live store of 100 000 entries
// of 2 KB, reopened as at the server's start.
func BenchmarkVerify100k(b *testing.B) {
	const entries = 100_000
	path := filepath.Join(b.TempDir(), "log.db")
	key := testKey(b)
	l := openTest(b, path, key)
	appendBatches(b, l, entries, 2<<10)
	l.Close()
	l = openTest(b, path, key)
	defer l.Close()
	b.ResetTimer()
	for range b.N {
		if n, err := l.Verify(); err != nil || n != entries {
			b.Fatalf("Verify = %d, %v", n, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()*1e3/float64(b.N), "ms/verify")
	b.ReportMetric(float64(entries*b.N)/b.Elapsed().Seconds(), "entries/s")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/1e6, "MB-file")
	}
}
