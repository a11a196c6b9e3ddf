package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/images/gpt"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted
// ext4 file system to the given number of blocks.
const ext4ResizeFS = 0x40086610

// preparePerm makes the perm partition ready for the gokrazy runtime to
// mount: it grows the partition to the disk's end when the disk is larger
// than the image it was written from, writes an empty ext4 file system
// onto it when it holds none (wiped, or the image was written only in
// part), and grows the file system to the partition's end. It runs
// before anything on the disk is mounted, so the kernel can re-read the
// partition table. What it could not do, it says on the console; a perm
// partition that did not grow still works.
func preparePerm(disk string, tab *gpt.Table) {
	grown, err := growPartition(disk, tab)
	if err != nil {
		slog.Error("qapi-init: could not grow the perm partition; it keeps its size",
			"err", err)
	}

	dev := gokrazy.PartitionDevice(disk, gokrazy.PermPartition)
	sb, part, formatted, err := formatPerm(dev, permTemplate)
	if err != nil {
		slog.Error("qapi-init: PERM HAS NO FILE SYSTEM: no ext4 file system could be read "+
			"or written on the perm partition, so keys, configuration and the message log "+
			"cannot be kept; write the whole image onto the disk again", "device", dev,
			"err", err)
		return
	}
	if formatted {
		slog.Warn("qapi-init: PERM FORMATTED: the perm partition held no ext4 file system, "+
			"so an empty one was written; the keys are made anew and the configuration "+
			"must be put back", "device", dev, "bytes", sb.bytes())
	}

	if !needsResize(sb, part, grown, formatted) {
		return
	}
	if err := growFS(dev, uint64(part/sb.blockSize)); err != nil {
		slog.Error("qapi-init: could not grow the perm file system; it keeps its size",
			"err", err)
		return
	}
	slog.Info("qapi-init: grew the perm file system to the partition's end",
		"device", dev, "fromBytes", sb.bytes(), "toBytes", part/sb.blockSize*sb.blockSize)
}

// growPartition extends the perm partition (the last one) to the end of
// the disk when the disk is larger than the image it was written from,
// and has the kernel re-read the partition table. It reports whether it
// did.
func growPartition(disk string, tab *gpt.Table) (bool, error) {
	if !tab.NeedsGrow() {
		return false, nil
	}
	before := tab.Partitions[gokrazy.PermPartition-1].Size()
	if !tab.GrowLast(2048) {
		return false, nil
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := tab.WriteTo(f); err != nil {
		return false, fmt.Errorf("writing the grown partition table: %w", err)
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return false, fmt.Errorf("re-reading the partition table of %s: %w", disk, err)
	}
	slog.Info("qapi-init: grew the perm partition to the disk's end", "disk", disk,
		"fromBytes", before, "toBytes", tab.Partitions[gokrazy.PermPartition-1].Size())
	return true, nil
}

// formatPerm writes the empty ext4 file system in the file template
// (gzip-compressed) onto the perm partition dev when the partition holds
// none, and returns the superblock
// of the file system on it, the partition's size in bytes as the kernel
// sees it, and whether it wrote a file system. It does not write when the
// superblock cannot be read, nor while anything holds dev open
// exclusively (a mount).
func formatPerm(dev, template string) (sb superblock, size int64, formatted bool, err error) {
	var f *os.File
	for range 50 { // the partition's node reappears after a re-read of the table
		if f, err = os.OpenFile(dev, os.O_RDWR|os.O_EXCL, 0); !errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return sb, 0, false, err
	}
	defer f.Close()
	if size, err = f.Seek(0, io.SeekEnd); err != nil {
		return sb, 0, false, err
	}
	sb, ok, err := readSuperblock(f, 0)
	if err != nil || ok {
		return sb, size, false, err
	}

	t, err := os.Open(template)
	if err != nil {
		return sb, size, false, fmt.Errorf("the initramfs has no empty perm file "+
			"system: %w", err)
	}
	defer t.Close()
	if sb, err = writeTemplate(f, size, t); err != nil {
		return sb, size, false, err
	}
	if err := f.Sync(); err != nil {
		return sb, size, false, fmt.Errorf("writing the empty perm file system: %w", err)
	}
	return sb, size, true, f.Close()
}

// growFS mounts the ext4 file system on dev and grows it online to blocks.
func growFS(dev string, blocks uint64) error {
	const mnt = "/perm-grow"
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mounting %s to grow it: %w", dev, err)
	}
	defer unix.Unmount(mnt, 0)
	d, err := os.Open(mnt)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4ResizeFS,
		uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("growing the ext4 file system on %s to %d blocks: %w",
			dev, blocks, errno)
	}
	return nil
}
