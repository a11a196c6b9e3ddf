package messagelog

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// flatten rewrites the log file at path into the layout of earlier
// versions: every entry directly in the records bucket.
func flatten(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		var names [][]byte
		if err := records.ForEachBucket(func(k []byte) error {
			names = append(names, k)
			return nil
		}); err != nil {
			return err
		}
		kv := map[string][]byte{}
		for _, name := range names {
			if err := records.Bucket(name).ForEach(func(k, v []byte) error {
				kv[string(k)] = append([]byte(nil), v...)
				return nil
			}); err != nil {
				return err
			}
			if err := records.DeleteBucket(name); err != nil {
				return err
			}
		}
		for k, v := range kv {
			if err := records.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRecordLayouts: a file whose first entries are in the flat layout of
// earlier versions and whose later ones are in a nested bucket per commit,
// one of them holding several entries, reads in order, verifies, finds
// each entry, and gives up its entries to Remove across both layouts and
// in the middle of a commit.
func TestRecordLayouts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	key := testKey(t)
	l := openTest(t, path, key)
	appendN(t, l, 1, 4)
	l.Close()
	flatten(t, path)

	l = openTest(t, path, key)
	defer l.Close()
	// Entries 5-7 in one commit, then 8 and 9 in one each.
	if err := l.Append(context.Background(), testRecord(5), testRecord(6),
		testRecord(7)); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 8, 2)

	seqs := func(from, to uint64) []uint64 {
		t.Helper()
		var got []uint64
		if err := l.Entries(from, to, func(e *Entry) error {
			if e.MessageID != testRecord(int(e.Seq)).MessageID {
				t.Errorf("entry %d holds message %s", e.Seq, e.MessageID)
			}
			got = append(got, e.Seq)
			return nil
		}); err != nil {
			t.Fatalf("Entries(%d, %d): %v", from, to, err)
		}
		return got
	}
	want := func(got []uint64, from, to uint64) {
		t.Helper()
		ok := len(got) == int(to-from+1)
		for i := range got {
			ok = ok && got[i] == from+uint64(i)
		}
		if !ok {
			t.Errorf("entries %v, want %d to %d", got, from, to)
		}
	}
	want(seqs(0, 0), 1, 9)
	want(seqs(3, 6), 3, 6)
	want(seqs(6, 6), 6, 6)
	want(seqs(7, 0), 7, 9)
	if n, err := l.Verify(); err != nil || n != 9 {
		t.Fatalf("Verify = %d, %v; want 9 entries", n, err)
	}
	err := l.view(func(tx *bolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		for seq := uint64(0); seq <= 10; seq++ {
			if got := getRecord(records, seq) != nil; got != (seq >= 1 && seq <= 9) {
				t.Errorf("getRecord(%d) found: %v", seq, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	hashOf := func(seq uint64) Hash {
		t.Helper()
		var h Hash
		if err := l.Entries(seq, seq, func(e *Entry) error { h = e.Hash(); return nil }); err != nil {
			t.Fatal(err)
		}
		return h
	}
	// Through the flat entries and into the commit of 5-7.
	if err := l.Remove(6, hashOf(6)); err != nil {
		t.Fatal(err)
	}
	want(seqs(0, 0), 7, 9)
	if n, err := l.Verify(); err != nil || n != 3 {
		t.Fatalf("Verify after Remove(6) = %d, %v; want 3 entries", n, err)
	}
	err = l.view(func(tx *bolt.Tx) error {
		records := tx.Bucket(bucketRecords)
		if getRecord(records, 6) != nil || getRecord(records, 7) == nil {
			t.Error("after Remove(6), entry 6 is still there or entry 7 is gone")
		}
		c := records.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v != nil {
				t.Errorf("a flat entry %x is left after Remove(6)", k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(9, hashOf(9)); err != nil {
		t.Fatal(err)
	}
	if got := seqs(0, 0); len(got) != 0 {
		t.Errorf("entries %v left after Remove(9)", got)
	}
	appendN(t, l, 10, 1)
	want(seqs(0, 0), 10, 10)
	if n, err := l.Verify(); err != nil || n != 1 {
		t.Fatalf("Verify after Remove(9) and an Append = %d, %v; want 1 entry", n, err)
	}
}
