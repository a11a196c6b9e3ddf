package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// TestHasExt4 checks the superblock test on a file system made by mke2fs
// at an offset, as perm lies on the disk, and on one that was wiped.
func TestHasExt4(t *testing.T) {
	testenv.NeedCommand(t, "mke2fs")
	const off = 1 << 20
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 9<<20); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096",
		"-E", "offset=1048576", img, "2048").CombinedOutput()
	if err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !hasExt4(f, off) {
		t.Error("hasExt4 finds no file system mke2fs made")
	}
	if hasExt4(f, 0) {
		t.Error("hasExt4 finds a file system where there is none")
	}
	if _, err := f.WriteAt(make([]byte, 4096), off); err != nil {
		t.Fatal(err)
	}
	if hasExt4(f, off) {
		t.Error("hasExt4 finds a file system after its superblock was wiped")
	}
	if hasExt4(f, 1<<40) {
		t.Error("hasExt4 finds a file system past the disk's end")
	}
}
