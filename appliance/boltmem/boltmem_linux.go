package boltmem

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// release finds the mappings of the file at path in /proc/self/maps, by
// device and inode, and advises the kernel that their pages are not
// needed. The caller keeps the mappings in place meanwhile.
func release(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("boltmem: %w", err)
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	ino := strconv.FormatUint(st.Ino, 10)
	// Some file systems (overlayfs) show another device in the maps; the
	// path, resolved as the kernel prints it, names the file there.
	abs, err := filepath.Abs(path)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return fmt.Errorf("boltmem: %w", err)
	}

	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return fmt.Errorf("boltmem: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[4] != ino || (fields[3] != dev && fields[5] != abs) {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// Only a shared map of the file itself: dropping a private
		// map's pages would discard what was written to them.
		if !strings.HasPrefix(fields[1], "r--s") {
			continue
		}
		_, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start),
			unix.MADV_DONTNEED)
		if errno != 0 {
			return fmt.Errorf("boltmem: madvise %s: %w", fields[0], errno)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("boltmem: reading /proc/self/maps: %w", err)
	}
	return nil
}
