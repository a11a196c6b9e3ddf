package main

import (
	"fmt"
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

// checkPerm says on the console when the perm partition holds no ext4 file
// system (wiped, or the image was written only in part): the gokrazy
// runtime then cannot mount /perm, and nothing the appliance makes (keys,
// configuration, message log) is kept.
//
// TODO: a perm partition without a file system is not formatted at boot.
func checkPerm(disk string, tab *gpt.Table) {
	f, err := os.Open(disk)
	if err != nil {
		return
	}
	defer f.Close()
	p := tab.Partitions[gokrazy.PermPartition-1]
	if !hasExt4(f, p.Offset()) {
		slog.Error("qapi-init: PERM HAS NO FILE SYSTEM: the perm partition holds no ext4, "+
			"so keys, configuration and the message log cannot be kept; write the whole "+
			"image onto the disk again", "disk", disk, "partition", gokrazy.PermPartition)
	}
}

// growPerm extends the perm partition (the last one) and its ext4 file
// system to the end of the disk when the disk is larger than the image it
// was written from. It runs before anything on the disk is mounted, so the
// kernel can re-read the partition table.
func growPerm(disk string, tab *gpt.Table) error {
	if !tab.NeedsGrow() {
		return nil
	}
	before := tab.Partitions[gokrazy.PermPartition-1].Size()
	if !tab.GrowLast(2048) {
		return nil
	}
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tab.WriteTo(f); err != nil {
		return fmt.Errorf("writing the grown partition table: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0); err != nil {
		return fmt.Errorf("re-reading the partition table of %s: %w", disk, err)
	}
	after := tab.Partitions[gokrazy.PermPartition-1].Size()

	dev := gokrazy.PartitionDevice(disk, gokrazy.PermPartition)
	const mnt = "/perm-grow"
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	var mountErr error
	for range 50 { // the partition node reappears after the re-read
		if mountErr = unix.Mount(dev, mnt, "ext4", 0, ""); mountErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if mountErr != nil {
		return fmt.Errorf("mounting %s to grow it: %w", dev, mountErr)
	}
	defer unix.Unmount(mnt, 0)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		return err
	}
	blocks := uint64(after) / uint64(st.Bsize)
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
	slog.Info("qapi-init: grew the perm partition", "device", dev,
		"fromBytes", before, "toBytes", after)
	return nil
}
