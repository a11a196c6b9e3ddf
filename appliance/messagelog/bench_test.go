package messagelog

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// written returns the bytes the process has handed to write calls so far
// (wchar of /proc/self/io), or -1 where the kernel does not say.
func written() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// benchAppend appends b.N records of size bytes from writers goroutines, every
// other one with a mark as the provider's request records carry, and
// reports records per second, the mean time one Append waits (what
// durability adds to each response before it is released) and the CPU
// time, user and system, the process spent per record: the figure that
// does not depend on how busy the machine is; and the bytes the process
// wrote per record, where Linux says.
func benchAppend(b *testing.B, maxBatch, size, writers int) {
	l, err := Open(Options{Path: filepath.Join(b.TempDir(), "log.db"), Key: testKey(b),
		MaxBatch: maxBatch, MaxDelay: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	rec := testRecord(1)
	rec.Signed = make([]byte, size)
	b.SetParallelism(max(writers/runtime.GOMAXPROCS(0), 1))
	b.SetBytes(int64(len(rec.Signed)))
	b.ReportAllocs()
	var waited, n atomic.Int64
	start, cpu0, w0 := time.Now(), cpuTime(b), written()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rec
		for pb.Next() {
			if i := n.Add(1); i%2 == 0 {
				r.Mark = Mark{Time: time.Now(), Key: binary.BigEndian.AppendUint64(nil,
					uint64(i))}
			} else {
				r.Mark = Mark{}
			}
			t0 := time.Now()
			if err := l.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
			waited.Add(int64(time.Since(t0)))
		}
	})
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(float64(waited.Load())/float64(b.N)/1e3, "us/append")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/record")
	if w0 >= 0 {
		b.ReportMetric(float64(written()-w0)/float64(b.N), "written-B/record")
	}
}

// BenchmarkAppendGroupCommit is the log as the security server configures
// it, with records of 4 KB.
func BenchmarkAppendGroupCommit(b *testing.B) { benchAppend(b, 0, 4<<10, 64) }

// BenchmarkAppendGroupCommit14K is BenchmarkAppendGroupCommit with records
// of 14 KB, what a 10 KB request becomes once signed: larger than a page.
// With 4 writers the commits are small, as at a server's lighter loads.
func BenchmarkAppendGroupCommit14K(b *testing.B) {
	for _, writers := range []int{4, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchAppend(b, 0, 14<<10, writers)
		})
	}
}

// BenchmarkAppendBatch1 commits each record in its own transaction, for
// comparison with group commit.
func BenchmarkAppendBatch1(b *testing.B) { benchAppend(b, 1, 4<<10, 64) }
