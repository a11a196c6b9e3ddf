package messagelog

import (
	"bytes"
	"testing"
)

// sealEntry stores what seal(encodeStored) stores, and returns the entry's
// Hash: the on-disk format does not depend on which one wrote it.
func TestSealEntryMatchesSeal(t *testing.T) {
	s, err := newSealer(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 4 << 10, 14 << 10} {
		rec := testRecord(size)
		rec.Signed = bytes.Repeat([]byte{'s'}, size)
		e := Entry{Seq: 7, Record: rec}
		e.Prev[0] = 9
		want := encodeStored(&e)
		wantHash := e.Hash()

		key := seqKey(e.Seq)
		v, hash, err := s.sealEntry(bucketRecords, key, &e)
		if err != nil {
			t.Fatal(err)
		}
		if hash != wantHash {
			t.Errorf("%d-byte body: hash %x, want %x", size, hash, wantHash)
		}
		plain, err := s.open(bucketRecords, key, v)
		if err != nil {
			t.Fatalf("%d-byte body: %v", size, err)
		}
		if !bytes.Equal(plain, want) {
			t.Errorf("%d-byte body: stored encoding differs from encodeStored", size)
		}
		if _, err := s.open(bucketRecords, seqKey(8), v); err == nil {
			t.Errorf("%d-byte body: the value opens under another key", size)
		}
	}
}

// BenchmarkSealRecord compares the writer's work per record before
// sealEntry (encode, seal, hash again) with sealEntry.
func BenchmarkSealRecord(b *testing.B) {
	s, err := newSealer(testKey(b))
	if err != nil {
		b.Fatal(err)
	}
	rec := testRecord(1)
	rec.Signed = make([]byte, 14<<10) // a 10 KB request, signed and base64-encoded
	key := seqKey(1)
	b.Run("encode+seal+hash", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := Entry{Seq: 1, Record: rec}
			if _, err := s.seal(bucketRecords, key, encodeStored(&e)); err != nil {
				b.Fatal(err)
			}
			_ = e.Hash()
		}
	})
	b.Run("sealEntry", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := Entry{Seq: 1, Record: rec}
			if _, _, err := s.sealEntry(bucketRecords, key, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
