package sysinfo

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadFromFakeProc(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("meminfo", "MemTotal:       1000 kB\nMemFree:    10 kB\nMemAvailable:    250 kB\n")
	write("stat", "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 1 1 1\n")
	r := &Reader{Proc: dir, Disk: dir}
	s, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUBusy != 0 || s.MemTotal != 1_024_000 || s.MemUsed() != 0.75 {
		t.Fatalf("first sample = %+v (mem used %v)", s, s.MemUsed())
	}
	if s.DiskTotal == 0 || s.DiskFreeShare() <= 0 || s.DiskFreeShare() > 1 {
		t.Fatalf("disk = %d/%d", s.DiskFree, s.DiskTotal)
	}
	// 100 more jiffies, 25 of them idle: 75% busy.
	write("stat", "cpu  150 0 125 720 105 0 0 0 0 0\n")
	s, err = r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUBusy != 0.75 {
		t.Fatalf("CPUBusy = %v, want 0.75", s.CPUBusy)
	}
}

func TestReadRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc here")
	}
	s, err := (&Reader{Disk: t.TempDir()}).Read()
	if err != nil {
		t.Fatal(err)
	}
	if s.MemTotal == 0 || s.DiskTotal == 0 {
		t.Fatalf("sample = %+v", s)
	}
}
