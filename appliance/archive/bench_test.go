package archive

import (
	"context"
	"testing"
	"time"
)

// BenchmarkArchive archives signed exchanges (two records each, about
// 2 KB per record) with their time stamps, and reports entries archived
// per second: build, encrypt, write, fsync, read back, verify, remove.
func BenchmarkArchive(b *testing.B) {
	w := newWorld(b)
	const perRun = 500
	b.ResetTimer()
	var entries int
	var busy time.Duration
	for range b.N {
		b.StopTimer()
		for range perRun / 2 {
			w.exchange(b)
		}
		w.stamp(b)
		b.StartTimer()
		t0 := time.Now()
		_, err := w.archiver(0).Run(context.Background(), time.Now().Add(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		busy += time.Since(t0)
		entries += perRun
	}
	b.ReportMetric(float64(entries)/busy.Seconds(), "entries/s")
}
