package messagelog

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// benchAppend appends b.N records of about 4 KB from 64 goroutines and
// reports records per second.
func benchAppend(b *testing.B, maxBatch int) {
	l, err := Open(Options{Path: filepath.Join(b.TempDir(), "log.db"), Key: testKey(b),
		MaxBatch: maxBatch})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := testRecord(1)
	rec.Signed = make([]byte, 4<<10)
	b.SetParallelism(32) // 32 goroutines per GOMAXPROCS
	b.SetBytes(int64(len(rec.Signed)))
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Append(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkAppendGroupCommit is the log as configured by default.
func BenchmarkAppendGroupCommit(b *testing.B) { benchAppend(b, 0) }

// BenchmarkAppendBatch1 commits each record in its own transaction, for
// comparison with group commit.
func BenchmarkAppendBatch1(b *testing.B) { benchAppend(b, 1) }
