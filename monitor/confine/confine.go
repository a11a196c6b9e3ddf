// Package confine takes from the monitoring station every means of reading
// the data that passes through the security server (clause 2.7): it drops
// to an unprivileged user and restricts the process with Landlock to its
// own state directory (read-write) and a few read-only paths such as
// /proc, then proves the restriction by trying to open the paths it must
// not reach.
//
// The order matters: open the files and sockets you need, call Apply,
// then Verify. After Apply the process cannot regain what it gave up.
package confine

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Options say what the process keeps.
type Options struct {
	// UID and GID to run as; both must be non-zero.
	UID, GID int
	// StateDir stays readable and writable; it is chowned to UID:GID
	// before the drop.
	StateDir string
	// ReadOnly paths (directories) stay readable, e.g. /proc and /sys.
	ReadOnly []string
	// BindTCP are the TCP ports the process may still bind (where the
	// kernel's Landlock supports network rules).
	BindTCP []uint16
}

// ErrNotRoot is returned when Apply runs without the root privileges it
// needs to change user.
var ErrNotRoot = errors.New("confinement needs to start as root to drop to its own user; " +
	"run as root, or pass -confine=false for development only")

// Verify tries to open each path for reading and returns an error naming
// every path that opened: the confinement failed and the process must not
// go on. A path that does not exist counts as not reachable only if its
// parent directory cannot be listed either.
func Verify(paths []string) error {
	var opened []string
	for _, p := range paths {
		if what, ok := Reachable(p); ok {
			opened = append(opened, what)
		}
	}
	if len(opened) > 0 {
		return fmt.Errorf("clause 2.7: the monitor can still read %s; refusing to run",
			strings.Join(opened, ", "))
	}
	return nil
}

// Reachable tries to open p for reading, as Verify does, and reports
// whether it opened, naming what opened: p, or its parent directory when
// p does not exist (a file created there later would be readable).
func Reachable(p string) (string, bool) {
	f, err := os.Open(p)
	if err == nil {
		f.Close()
		return p, true
	}
	if errors.Is(err, os.ErrNotExist) {
		parent := p[:max(strings.LastIndex(p, "/"), 1)]
		if d, err := os.Open(parent); err == nil {
			d.Close()
			return parent + " (parent of missing " + p + ")", true
		}
	}
	return "", false
}
