package main

import (
	"encoding/binary"
	"io"
)

// ext4 keeps its superblock 1024 bytes into the file system; the magic
// number sits 0x38 bytes into the superblock.
const (
	ext4MagicOffset = 1024 + 0x38
	ext4Magic       = 0xEF53
)

// hasExt4 reports whether the partition that starts at off in r carries an
// ext2, ext3 or ext4 superblock (they share the magic number; the image
// builder makes ext4).
func hasExt4(r io.ReaderAt, off int64) bool {
	var b [2]byte
	if _, err := r.ReadAt(b[:], off+ext4MagicOffset); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(b[:]) == ext4Magic
}
