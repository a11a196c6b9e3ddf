// Package cpio writes cpio archives in the "newc" format, the format the
// Linux kernel unpacks as an initramfs.
//
// The writer stores only what the kernel reads: names, modes, sizes,
// contents and link targets. Owners are root and times are zero, so that the
// same files give the same archive bytes.
package cpio

import (
	"fmt"
	"io"
)

const (
	modeDir     = 0o040000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	trailer     = "TRAILER!!!"
)

// Writer writes a newc cpio archive. Entries are written in the order the
// caller adds them; a directory must be added before the entries inside it.
// The caller must call Close to write the trailer.
type Writer struct {
	w     io.Writer
	n     int64 // bytes written, for padding
	inode uint32
	rdev  [2]uint32 // major, minor of the entry being written
	err   error
}

// NewWriter returns a Writer that writes the archive to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, inode: 1} }

// Dir adds a directory with the given permission bits (for example 0o755).
func (w *Writer) Dir(name string, perm uint32) error {
	return w.entry(name, modeDir|perm&0o7777, nil, 2)
}

// File adds a regular file with the given permission bits and contents.
func (w *Writer) File(name string, perm uint32, data []byte) error {
	return w.entry(name, modeRegular|perm&0o7777, data, 1)
}

// Symlink adds a symbolic link name pointing to target.
func (w *Writer) Symlink(name, target string) error {
	return w.entry(name, modeSymlink|0o777, []byte(target), 1)
}

// CharDev adds a character device node, such as dev/console (5, 1), which
// the kernel opens for the initramfs's first program before any devtmpfs is
// mounted.
func (w *Writer) CharDev(name string, perm, major, minor uint32) error {
	w.rdev = [2]uint32{major, minor}
	defer func() { w.rdev = [2]uint32{} }()
	return w.entry(name, modeChar|perm&0o7777, nil, 1)
}

// Close writes the trailer entry. It does not close the underlying writer.
func (w *Writer) Close() error {
	if err := w.header(trailer, 0, 0, 1, 0); err != nil {
		return err
	}
	return w.pad(4)
}

func (w *Writer) entry(name string, mode uint32, data []byte, nlink uint32) error {
	if name == "" || name[0] == '/' || name == trailer {
		return fmt.Errorf("cpio: invalid entry name %q: use a relative path", name)
	}
	w.inode++
	if err := w.header(name, mode, w.inode, nlink, len(data)); err != nil {
		return err
	}
	w.write(data)
	if err := w.pad(4); err != nil {
		return fmt.Errorf("cpio: writing %s: %w", name, err)
	}
	return nil
}

// header writes a newc header, the name and its padding. All numeric fields
// are eight hexadecimal digits.
func (w *Writer) header(name string, mode, inode, nlink uint32, size int) error {
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		inode, mode, 0, 0, nlink, 0, size, 0, 0, w.rdev[0], w.rdev[1], len(name)+1, 0)
	w.write([]byte(h))
	w.write([]byte(name + "\x00"))
	if err := w.pad(4); err != nil {
		return fmt.Errorf("cpio: writing header of %s: %w", name, err)
	}
	return nil
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	w.err = err
}

func (w *Writer) pad(align int64) error {
	if r := w.n % align; r != 0 {
		w.write(make([]byte, align-r))
	}
	return w.err
}
