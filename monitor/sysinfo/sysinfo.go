// Package sysinfo reads the environment figures the monitoring station
// shows beside the exchanges: processor load, memory, and free space on
// the state partition (clause 2.6). It reads /proc and statfs only.
package sysinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Sample is one reading.
type Sample struct {
	// CPUBusy is the share of processor time not idle since the previous
	// reading (0 on the first), from 0 to 1.
	CPUBusy      float64 `json:"cpuBusy"`
	MemTotal     uint64  `json:"memTotal"`     // bytes
	MemAvailable uint64  `json:"memAvailable"` // bytes
	DiskTotal    uint64  `json:"diskTotal"`    // bytes, of the state partition
	DiskFree     uint64  `json:"diskFree"`     // bytes available to unprivileged users
}

// MemUsed returns the used share of memory, from 0 to 1.
func (s Sample) MemUsed() float64 {
	if s.MemTotal == 0 {
		return 0
	}
	return 1 - float64(s.MemAvailable)/float64(s.MemTotal)
}

// DiskFreeShare returns the free share of the state partition, 0 to 1.
func (s Sample) DiskFreeShare() float64 {
	if s.DiskTotal == 0 {
		return 0
	}
	return float64(s.DiskFree) / float64(s.DiskTotal)
}

// Reader takes samples; it remembers the previous processor counters.
// Safe for concurrent use.
type Reader struct {
	// Proc is the proc filesystem's root; "/proc" when empty.
	Proc string
	// Disk is a path on the partition to measure.
	Disk string

	mu              sync.Mutex
	prevIdle, prevT uint64
}

// Read takes a sample.
func (r *Reader) Read() (Sample, error) {
	proc := r.Proc
	if proc == "" {
		proc = "/proc"
	}
	var s Sample
	f, err := os.Open(proc + "/stat")
	if err != nil {
		return s, fmt.Errorf("read processor counters: %w", err)
	}
	idle, total, err := parseStat(f)
	f.Close()
	if err != nil {
		return s, err
	}
	r.mu.Lock()
	if r.prevT != 0 && total > r.prevT {
		s.CPUBusy = 1 - float64(idle-r.prevIdle)/float64(total-r.prevT)
	}
	r.prevIdle, r.prevT = idle, total
	r.mu.Unlock()

	mi, err := os.ReadFile(proc + "/meminfo")
	if err != nil {
		return s, fmt.Errorf("read memory figures: %w", err)
	}
	s.MemTotal, s.MemAvailable = parseMeminfo(mi)

	if r.Disk != "" {
		s.DiskTotal, s.DiskFree, err = diskSpace(r.Disk)
		if err != nil {
			return s, fmt.Errorf("measure free space at %s: %w", r.Disk, err)
		}
	}
	return s, nil
}

// parseStat returns idle (idle+iowait) and total jiffies from the "cpu"
// line of /proc/stat.
func parseStat(r io.Reader) (idle, total uint64, err error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("/proc/stat cpu field %d: %w", i+1, err)
			}
			total += n
			if i == 3 || i == 4 { // idle, iowait
				idle += n
			}
		}
		return idle, total, nil
	}
	return 0, 0, fmt.Errorf("/proc/stat has no cpu line")
}

func parseMeminfo(b []byte) (total, avail uint64) {
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total = n * 1024
		case "MemAvailable:":
			avail = n * 1024
		}
	}
	return total, avail
}
