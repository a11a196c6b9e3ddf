// Package gpt reads and writes GUID partition tables (UEFI specification,
// chapter 5): the protective MBR, the primary header and entry array at the
// start of the disk, and the backup copies at its end.
//
// Only what the appliance needs is supported: 512-byte sectors and the
// standard array of 128 entries of 128 bytes.
package gpt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// SectorSize is the logical sector size this package assumes.
const SectorSize = 512

const (
	numEntries  = 128
	entrySize   = 128
	headerSize  = 92
	arraySector = numEntries * entrySize / SectorSize // 32
	signature   = "EFI PART"
)

// GUID is a GUID in its textual byte order: Parse("C12A7328-...") gives
// GUID{0xC1, 0x2A, ...}. On disk the first three fields are little-endian.
type GUID [16]byte

// Well-known partition type GUIDs.
var (
	// TypeESP is the EFI system partition.
	TypeESP = MustParse("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	// TypeLinuxData is a Linux file system (the root slots and perm).
	TypeLinuxData = MustParse("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
)

// Parse parses the 36-character textual form of a GUID.
func Parse(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return g, fmt.Errorf("gpt: malformed GUID %q", s)
	}
	for i := range g {
		var b byte
		if _, err := fmt.Sscanf(h[2*i:2*i+2], "%02x", &b); err != nil {
			return g, fmt.Errorf("gpt: malformed GUID %q: %w", s, err)
		}
		g[i] = b
	}
	return g, nil
}

// MustParse is Parse for constants; it panics on a malformed GUID.
func MustParse(s string) GUID {
	g, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return g
}

// String returns the upper-case textual form.
func (g GUID) String() string {
	return fmt.Sprintf("%X-%X-%X-%X-%X", g[0:4], g[4:6], g[6:8], g[8:10], g[10:16])
}

// Derive returns a name-based GUID (version 5 layout, SHA-256 instead of
// SHA-1) for name: the same name always gives the same GUID, which makes
// images built from the same inputs byte-identical.
func Derive(name string) GUID {
	sum := sha256.Sum256([]byte("qapi gpt guid\x00" + name))
	var g GUID
	copy(g[:], sum[:16])
	g[6] = g[6]&0x0f | 0x50
	g[8] = g[8]&0x3f | 0x80
	return g
}

func (g GUID) disk() []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], binary.BigEndian.Uint32(g[0:]))
	binary.LittleEndian.PutUint16(b[4:], binary.BigEndian.Uint16(g[4:]))
	binary.LittleEndian.PutUint16(b[6:], binary.BigEndian.Uint16(g[6:]))
	copy(b[8:], g[8:])
	return b
}

func guidFromDisk(b []byte) GUID {
	var g GUID
	binary.BigEndian.PutUint32(g[0:], binary.LittleEndian.Uint32(b[0:]))
	binary.BigEndian.PutUint16(g[4:], binary.LittleEndian.Uint16(b[4:]))
	binary.BigEndian.PutUint16(g[6:], binary.LittleEndian.Uint16(b[6:]))
	copy(g[8:], b[8:16])
	return g
}

// Partition is one entry of the table. FirstLBA and LastLBA are inclusive.
type Partition struct {
	Type     GUID
	GUID     GUID
	FirstLBA uint64
	LastLBA  uint64
	Name     string
}

// Size returns the partition's size in bytes.
func (p Partition) Size() int64 { return int64(p.LastLBA-p.FirstLBA+1) * SectorSize }

// Offset returns the partition's start in bytes.
func (p Partition) Offset() int64 { return int64(p.FirstLBA) * SectorSize }

// Table is a partition table of a disk of Sectors sectors.
type Table struct {
	DiskGUID   GUID
	Sectors    uint64
	Partitions []Partition

	// alternate is the backup header's sector as the primary header
	// records it; Read sets it.
	alternate uint64
}

// FirstUsable is the first sector a partition may use.
func (t *Table) FirstUsable() uint64 { return 2 + arraySector }

// LastUsable is the last sector a partition may use.
func (t *Table) LastUsable() uint64 { return t.Sectors - 2 - arraySector }

// Validate checks that the partitions fit the disk and do not overlap.
func (t *Table) Validate() error {
	if len(t.Partitions) > numEntries {
		return fmt.Errorf("gpt: %d partitions, at most %d", len(t.Partitions), numEntries)
	}
	for i, p := range t.Partitions {
		if p.FirstLBA < t.FirstUsable() || p.LastLBA > t.LastUsable() || p.LastLBA < p.FirstLBA {
			return fmt.Errorf("gpt: partition %d (%d-%d) outside usable sectors %d-%d",
				i+1, p.FirstLBA, p.LastLBA, t.FirstUsable(), t.LastUsable())
		}
		for j, q := range t.Partitions[:i] {
			if p.FirstLBA <= q.LastLBA && q.FirstLBA <= p.LastLBA {
				return fmt.Errorf("gpt: partitions %d and %d overlap", j+1, i+1)
			}
		}
	}
	return nil
}

// WriteTo writes the protective MBR, both headers and both entry arrays to
// w, a disk of t.Sectors sectors. It leaves every other sector untouched.
func (t *Table) WriteTo(w io.WriterAt) error {
	if err := t.Validate(); err != nil {
		return err
	}
	array := make([]byte, numEntries*entrySize)
	for i, p := range t.Partitions {
		e := array[i*entrySize:]
		copy(e[0:], p.Type.disk())
		copy(e[16:], p.GUID.disk())
		binary.LittleEndian.PutUint64(e[32:], p.FirstLBA)
		binary.LittleEndian.PutUint64(e[40:], p.LastLBA)
		name := utf16.Encode([]rune(p.Name))
		if len(name) > 36 {
			return fmt.Errorf("gpt: partition name %q longer than 36 UTF-16 units", p.Name)
		}
		for j, u := range name {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	arrayCRC := crc32.ChecksumIEEE(array)

	last := t.Sectors - 1
	backupArray := last - arraySector
	writes := []struct {
		lba  uint64
		data []byte
	}{
		{0, t.protectiveMBR()},
		{1, t.header(1, last, 2, arrayCRC)},
		{2, array},
		{backupArray, array},
		{last, t.header(last, 1, backupArray, arrayCRC)},
	}
	for _, wr := range writes {
		if _, err := w.WriteAt(wr.data, int64(wr.lba)*SectorSize); err != nil {
			return fmt.Errorf("gpt: writing sector %d: %w", wr.lba, err)
		}
	}
	return nil
}

func (t *Table) protectiveMBR() []byte {
	b := make([]byte, SectorSize)
	e := b[446:]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:], 1)
	size := t.Sectors - 1
	if size > 0xFFFFFFFF {
		size = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(e[12:], uint32(size))
	b[510], b[511] = 0x55, 0xAA
	return b
}

func (t *Table) header(my, alternate, entries uint64, arrayCRC uint32) []byte {
	b := make([]byte, SectorSize)
	copy(b[0:], signature)
	binary.LittleEndian.PutUint32(b[8:], 0x00010000)
	binary.LittleEndian.PutUint32(b[12:], headerSize)
	binary.LittleEndian.PutUint64(b[24:], my)
	binary.LittleEndian.PutUint64(b[32:], alternate)
	binary.LittleEndian.PutUint64(b[40:], t.FirstUsable())
	binary.LittleEndian.PutUint64(b[48:], t.LastUsable())
	copy(b[56:], t.DiskGUID.disk())
	binary.LittleEndian.PutUint64(b[72:], entries)
	binary.LittleEndian.PutUint32(b[80:], numEntries)
	binary.LittleEndian.PutUint32(b[84:], entrySize)
	binary.LittleEndian.PutUint32(b[88:], arrayCRC)
	binary.LittleEndian.PutUint32(b[16:], crc32.ChecksumIEEE(b[:headerSize]))
	return b
}

// ErrNoTable is returned (wrapped) when a disk has no valid primary GPT.
var ErrNoTable = errors.New("no GUID partition table")

// Read parses the primary table of a disk of size bytes. It checks both
// CRCs. Sectors is taken from size, not from the header, so a disk that
// grew since the table was written reads as larger; NeedsGrow tells.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	hdr := make([]byte, SectorSize)
	if _, err := r.ReadAt(hdr, SectorSize); err != nil {
		return nil, fmt.Errorf("gpt: reading header: %w", err)
	}
	if string(hdr[:8]) != signature {
		return nil, ErrNoTable
	}
	hs := binary.LittleEndian.Uint32(hdr[12:])
	if hs < headerSize || hs > SectorSize {
		return nil, fmt.Errorf("%w: header size %d", ErrNoTable, hs)
	}
	h := bytes.Clone(hdr[:hs])
	want := binary.LittleEndian.Uint32(h[16:])
	binary.LittleEndian.PutUint32(h[16:], 0)
	if crc32.ChecksumIEEE(h) != want {
		return nil, fmt.Errorf("%w: header CRC mismatch", ErrNoTable)
	}
	n := binary.LittleEndian.Uint32(hdr[80:])
	es := binary.LittleEndian.Uint32(hdr[84:])
	if es < entrySize || n == 0 || n*es > 1<<20 {
		return nil, fmt.Errorf("%w: %d entries of %d bytes", ErrNoTable, n, es)
	}
	array := make([]byte, n*es)
	if _, err := r.ReadAt(array, int64(binary.LittleEndian.Uint64(hdr[72:]))*SectorSize); err != nil {
		return nil, fmt.Errorf("gpt: reading entries: %w", err)
	}
	if crc32.ChecksumIEEE(array) != binary.LittleEndian.Uint32(hdr[88:]) {
		return nil, fmt.Errorf("%w: entry array CRC mismatch", ErrNoTable)
	}
	t := &Table{
		DiskGUID: guidFromDisk(hdr[56:]),
		Sectors:  uint64(size) / SectorSize,
	}
	for i := uint32(0); i < n; i++ {
		e := array[i*es:]
		typ := guidFromDisk(e[0:])
		if typ == (GUID{}) {
			// Unused entries may sit between used ones; keep numbering.
			t.Partitions = append(t.Partitions, Partition{})
			continue
		}
		var name []uint16
		for j := 56; j+1 < entrySize; j += 2 {
			u := binary.LittleEndian.Uint16(e[j:])
			if u == 0 {
				break
			}
			name = append(name, u)
		}
		t.Partitions = append(t.Partitions, Partition{
			Type:     typ,
			GUID:     guidFromDisk(e[16:]),
			FirstLBA: binary.LittleEndian.Uint64(e[32:]),
			LastLBA:  binary.LittleEndian.Uint64(e[40:]),
			Name:     string(utf16.Decode(name)),
		})
	}
	for len(t.Partitions) > 0 && t.Partitions[len(t.Partitions)-1].Type == (GUID{}) {
		t.Partitions = t.Partitions[:len(t.Partitions)-1]
	}
	t.alternate = binary.LittleEndian.Uint64(hdr[32:])
	return t, nil
}

// NeedsGrow reports whether the disk is larger than when the table read by
// Read was written: its backup header is not in the disk's last sector.
func (t *Table) NeedsGrow() bool { return t.alternate != 0 && t.alternate != t.Sectors-1 }

// GrowLast extends the last partition to the end of the usable sectors,
// keeping its size a multiple of align sectors, and reports whether it
// changed. The caller writes the table with WriteTo afterwards.
func (t *Table) GrowLast(align uint64) bool {
	if len(t.Partitions) == 0 || align == 0 {
		return false
	}
	p := &t.Partitions[len(t.Partitions)-1]
	size := (t.LastUsable() - p.FirstLBA + 1) / align * align
	last := p.FirstLBA + size - 1
	if last <= p.LastLBA {
		return false
	}
	p.LastLBA = last
	return true
}
