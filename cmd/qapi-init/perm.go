package main

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Fields of the ext4 superblock, which starts 1024 bytes into the file
// system, by their offset in it.
const (
	superblockOffset = 1024
	superblockSize   = 1024
	sbBlocksLo       = 0x04 // s_blocks_count_lo
	sbLogBlockSize   = 0x18 // block size is 1024 << s_log_block_size
	sbBlocksPerGroup = 0x20
	sbMagic          = 0x38
	sbIncompat       = 0x60
	sbBlocksHi       = 0x150 // s_blocks_count_hi, with the 64bit feature

	ext4Magic     = 0xEF53
	incompat64Bit = 0x80
)

// superblock is what the init needs of an ext4 superblock.
type superblock struct {
	blocks         uint64 // the file system's size in blocks
	blockSize      int64
	blocksPerGroup uint64
}

// bytes returns the file system's size in bytes.
func (sb superblock) bytes() int64 { return int64(sb.blocks) * sb.blockSize }

// parseSuperblock decodes the superblock b (superblockSize bytes). It
// reports false when b carries no ext2, ext3 or ext4 magic number (they
// share it; the image builder makes ext4) or sizes no file system.
func parseSuperblock(b []byte) (superblock, bool) {
	le := binary.LittleEndian
	if len(b) < superblockSize || le.Uint16(b[sbMagic:]) != ext4Magic {
		return superblock{}, false
	}
	logSize := le.Uint32(b[sbLogBlockSize:])
	if logSize > 6 { // blocks of 64 KiB at most
		return superblock{}, false
	}
	sb := superblock{
		blocks:         uint64(le.Uint32(b[sbBlocksLo:])),
		blockSize:      1024 << logSize,
		blocksPerGroup: uint64(le.Uint32(b[sbBlocksPerGroup:])),
	}
	if le.Uint32(b[sbIncompat:])&incompat64Bit != 0 {
		sb.blocks |= uint64(le.Uint32(b[sbBlocksHi:])) << 32
	}
	return sb, sb.blocks > 0 && sb.blocksPerGroup > 0
}

// readSuperblock reads the superblock of the ext4 file system that starts
// at off in r. It reports false, with no error, when there is none, and an
// error when the superblock could not be read: the caller must then not
// take the partition for empty.
func readSuperblock(r io.ReaderAt, off int64) (superblock, bool, error) {
	b := make([]byte, superblockSize)
	_, err := r.ReadAt(b, off+superblockOffset)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return superblock{}, false, nil // too short to hold a file system
	}
	if err != nil {
		return superblock{}, false, fmt.Errorf("reading the ext4 superblock: %w", err)
	}
	sb, ok := parseSuperblock(b)
	return sb, ok, nil
}

// writeTemplate writes the gzip-compressed file system image template to
// the start of w, which is size bytes long, and returns the written file
// system's superblock. It writes nothing when the template is no ext4
// image or is larger than size. The caller syncs w.
func writeTemplate(w io.WriterAt, size int64, template io.Reader) (superblock, error) {
	zr, err := gzip.NewReader(template)
	if err != nil {
		return superblock{}, fmt.Errorf("reading the empty perm file system: %w", err)
	}
	br := bufio.NewReaderSize(zr, 1<<20)
	head, err := br.Peek(superblockOffset + superblockSize)
	if err != nil {
		return superblock{}, fmt.Errorf("reading the empty perm file system: %w", err)
	}
	sb, ok := parseSuperblock(head[superblockOffset:])
	if !ok {
		return superblock{}, errors.New("the empty perm file system in the initramfs " +
			"is no ext4 image: rebuild the image")
	}
	if sb.bytes() > size {
		return superblock{}, fmt.Errorf("the perm partition (%d bytes) is smaller than "+
			"an empty perm file system (%d bytes): rebuild the image", size, sb.bytes())
	}

	n, err := io.Copy(io.NewOffsetWriter(w, 0), io.LimitReader(br, sb.bytes()))
	if err != nil {
		return superblock{}, fmt.Errorf("writing the empty perm file system: %w", err)
	}
	if n != sb.bytes() {
		return superblock{}, fmt.Errorf("the empty perm file system in the initramfs "+
			"ends after %d of its %d bytes: rebuild the image", n, sb.bytes())
	}
	// The image must end where its superblock says; reading to the end
	// checks the gzip checksum too.
	rest, err := io.Copy(io.Discard, br)
	if err != nil {
		return superblock{}, fmt.Errorf("reading the empty perm file system: %w", err)
	}
	if rest != 0 {
		return superblock{}, fmt.Errorf("the empty perm file system in the initramfs "+
			"has %d bytes past its end: rebuild the image", rest)
	}
	return sb, nil
}

// needsResize reports whether the file system sb should be grown to fill
// its partition of partBytes: always after the partition was grown or the
// file system was written from the template, and otherwise (a boot that
// stopped between growing the partition and the file system) when at
// least one block group would fit. The kernel may leave a last group too
// small to hold its metadata unused; that remainder, less than a group,
// is not worth a mount at every boot.
func needsResize(sb superblock, partBytes int64, partitionGrown, formatted bool) bool {
	fit := uint64(partBytes / sb.blockSize)
	if fit <= sb.blocks {
		return false
	}
	return partitionGrown || formatted || fit-sb.blocks >= sb.blocksPerGroup
}
