package messagelog

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestMarks shows a mark kept with its record across a reopen, a mark on
// its own, and a prune that takes the old ones in chunks and leaves the
// rest.
func TestMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	key := testKey(t)
	l := openTest(t, path, key)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()

	rec := testRecord(1)
	rec.Mark = Mark{Time: t0, Key: []byte("with-record")}
	if err := l.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	old := make([]Mark, pruneChunk+10)
	for i := range old {
		old[i] = Mark{Time: t0.Add(-time.Duration(i+1) * time.Second),
			Key: fmt.Appendf(nil, "old-%d", i)}
	}
	if err := l.PutMarks(old...); err != nil {
		t.Fatal(err)
	}
	bad := testRecord(2)
	bad.Mark = Mark{Time: t0, Key: make([]byte, MaxMarkKey+1)}
	if err := l.Append(ctx, bad); err == nil {
		t.Error("a record with a mark too long was stored")
	}
	l.Close()

	l = openTest(t, path, key)
	defer l.Close()
	marks := marksOf(t, l)
	if len(marks) != len(old)+1 || !marks["with-record"] || !marks["old-0"] {
		t.Fatalf("after reopen %d marks, want %d", len(marks), len(old)+1)
	}
	var prev time.Time
	err := l.Marks(func(m Mark) error {
		if m.Time.Before(prev) {
			return fmt.Errorf("mark %q at %s comes after one at %s", m.Key, m.Time, prev)
		}
		prev = m.Time
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := collect(t, l)
	if len(e) != 1 || e[0].Mark.Key != nil {
		t.Fatalf("the log holds %d entries, want 1 without a mark", len(e))
	}

	n, err := l.PruneMarks(ctx, t0)
	if err != nil || n != len(old) {
		t.Fatalf("PruneMarks = %d, %v; want %d dropped", n, err, len(old))
	}
	if marks := marksOf(t, l); len(marks) != 1 || !marks["with-record"] {
		t.Fatalf("after the prune the marks are %v, want with-record only", marks)
	}
	if n, err := l.PruneMarks(ctx, t0); err != nil || n != 0 {
		t.Errorf("a second PruneMarks = %d, %v; want nothing to do", n, err)
	}
}
