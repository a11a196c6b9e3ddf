package messagelog

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// benchAppend appends b.N records of about 4 KB from 64 goroutines and
// reports records per second and the mean time one Append waits: what
// durability adds to each response before it is released.
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
	var waited atomic.Int64
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t0 := time.Now()
			if err := l.Append(context.Background(), rec); err != nil {
				b.Error(err)
				return
			}
			waited.Add(int64(time.Since(t0)))
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(waited.Load())/float64(b.N)/1e3, "us/append")
}

// BenchmarkAppendGroupCommit is the log as configured by default.
func BenchmarkAppendGroupCommit(b *testing.B) { benchAppend(b, 0) }

// BenchmarkAppendBatch1 commits each record in its own transaction, for
// comparison with group commit.
func BenchmarkAppendBatch1(b *testing.B) { benchAppend(b, 1) }
