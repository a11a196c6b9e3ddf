package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/images"
	"github.com/qapi-az/qapi/internal/testenv"
)

// TestReadSuperblock reads the superblock of a file system made by mke2fs
// at an offset, as perm lies on the disk, and of one that was wiped.
func TestReadSuperblock(t *testing.T) {
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
	sb, ok, err := readSuperblock(f, off)
	if err != nil || !ok {
		t.Fatalf("readSuperblock finds no file system mke2fs made: %v", err)
	}
	if sb.blocks != 2048 || sb.blockSize != 4096 || sb.blocksPerGroup != 32768 {
		t.Errorf("superblock %+v; want 2048 blocks of 4096 bytes, 32768 a group", sb)
	}
	if _, ok, err := readSuperblock(f, 0); ok || err != nil {
		t.Errorf("readSuperblock finds a file system where there is none (%v)", err)
	}
	if _, err := f.WriteAt(make([]byte, 4096), off); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := readSuperblock(f, off); ok || err != nil {
		t.Errorf("readSuperblock finds a file system after its superblock was wiped (%v)", err)
	}
	if _, ok, err := readSuperblock(f, 1<<40); ok || err != nil {
		t.Errorf("readSuperblock finds a file system past the disk's end (%v)", err)
	}
	f.Close()
	if _, _, err := readSuperblock(f, off); err == nil {
		t.Error("readSuperblock reports no error when the disk cannot be read; " +
			"the init would take perm for empty")
	}
}

// TestWriteTemplate writes the image builder's empty perm file system
// onto a partition of a disk image that holds noise and checks, with
// e2fsck, that the partition then holds a sound file system of the
// template's size, and that nothing outside the partition changed.
//
// The online growth that follows at boot needs CAP_SYS_RESOURCE, which a
// build machine's container may lack; TestBootFormatsPerm in package
// images boots a disk whose perm is formatted and grown, and checks the
// result with e2fsck.
func TestWriteTemplate(t *testing.T) {
	testenv.NeedCommand(t, "mke2fs")
	testenv.NeedCommand(t, "e2fsck")
	template, err := images.PermTemplate(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	const (
		off  = 1 << 20
		size = 128 << 20
	)
	disk := make([]byte, off+size+off)
	rand.NewChaCha8([32]byte{1}).Read(disk)
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok, _ := readSuperblock(f, off); ok {
		t.Fatal("the noise reads as a file system")
	}

	sb, err := writeTemplate(io.NewOffsetWriter(f, off), size, bytes.NewReader(template))
	if err != nil {
		t.Fatal(err)
	}
	if sb.bytes() != images.PermTemplateSize || sb.blockSize != 4096 {
		t.Errorf("wrote a file system of %d blocks of %d bytes; want %d bytes in 4 KiB "+
			"blocks", sb.blocks, sb.blockSize, images.PermTemplateSize)
	}
	if got, ok, err := readSuperblock(f, off); !ok || err != nil || got != sb {
		t.Errorf("the partition's superblock reads %+v, %v, %v; want %+v", got, ok, err, sb)
	}
	after, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	end := off + images.PermTemplateSize
	if !bytes.Equal(after[:off], disk[:off]) || !bytes.Equal(after[end:], disk[end:]) {
		t.Error("writing the template changed bytes outside it")
	}
	out, err := exec.Command("e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", img, off)).
		CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn on the written file system: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("/%d blocks", sb.blocks)) {
		t.Errorf("e2fsck reports another size than %d blocks:\n%s", sb.blocks, out)
	}
}

// TestWriteTemplateRefuses checks that a template that does not fit the
// partition, or is no ext4 image, is refused before anything is written.
func TestWriteTemplateRefuses(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	sbBytes := make([]byte, 4096)
	copy(sbBytes[superblockOffset+sbMagic:], []byte{0x53, 0xEF})
	sbBytes[superblockOffset+sbBlocksLo] = 4          // 4 blocks
	sbBytes[superblockOffset+sbLogBlockSize] = 0      // of 1 KiB
	sbBytes[superblockOffset+sbBlocksPerGroup+1] = 32 // 8192 a group
	for name, c := range map[string]struct {
		template []byte
		size     int64
		want     string
	}{
		"not gzip":       {sbBytes, 1 << 20, "empty perm file system"},
		"no ext4":        {gz(make([]byte, 4096)), 1 << 20, "no ext4 image"},
		"too large":      {gz(sbBytes), 3072, "smaller than"},
		"short":          {gz(sbBytes[:3000]), 1 << 20, "ends after 3000 of its 4096"},
		"trailing bytes": {gz(append(sbBytes, 1)), 1 << 20, "past its end"},
	} {
		w := &recorder{}
		_, err := writeTemplate(w, c.size, bytes.NewReader(c.template))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error saying %q", name, err, c.want)
		}
		if name != "short" && name != "trailing bytes" && w.n > 0 {
			t.Errorf("%s: wrote %d bytes before refusing", name, w.n)
		}
	}
	w := &recorder{}
	sb, err := writeTemplate(w, 4096, bytes.NewReader(gz(sbBytes)))
	if err != nil || sb.bytes() != 4096 || w.n != 4096 {
		t.Errorf("a template that fits exactly: %+v, %d bytes written, %v", sb, w.n, err)
	}
}

// recorder counts the bytes written to it.
type recorder struct{ n int }

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	r.n += len(p)
	return len(p), nil
}

func TestNeedsResize(t *testing.T) {
	sb := superblock{blocks: 16384, blockSize: 4096, blocksPerGroup: 32768}
	const mib = 1 << 20
	for _, c := range []struct {
		part             int64
		grown, formatted bool
		want             bool
	}{
		{64 * mib, true, true, false}, // the file system fills the partition
		{100 * mib, false, true, true},
		{100 * mib, true, false, true},
		{100 * mib, false, false, false}, // less than a group left: not worth a mount
		{192 * mib, false, false, true},  // a boot that stopped before growing it
		{32 * mib, true, true, false},
	} {
		if got := needsResize(sb, c.part, c.grown, c.formatted); got != c.want {
			t.Errorf("needsResize(%d blocks, partition %d MiB, grown %v, formatted %v) = %v",
				sb.blocks, c.part/mib, c.grown, c.formatted, got)
		}
	}
}
