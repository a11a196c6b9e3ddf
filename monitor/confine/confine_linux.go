package confine

import (
	"fmt"
	"os"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Apply restricts file access with Landlock and drops to opts.UID/GID. It
// needs root and a kernel with Landlock (5.13 or later, enabled in the
// lsm= list); without Landlock it fails rather than run half-confined.
func Apply(opts Options) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if opts.UID == 0 || opts.GID == 0 {
		return fmt.Errorf("confinement needs a non-root user and group, got %d:%d",
			opts.UID, opts.GID)
	}
	if err := os.Chown(opts.StateDir, opts.UID, opts.GID); err != nil {
		return fmt.Errorf("give the state directory to the monitor's user: %w", err)
	}
	if err := chownTree(opts.StateDir, opts.UID, opts.GID); err != nil {
		return err
	}

	rules := []landlock.Rule{landlock.RWDirs(opts.StateDir)}
	for _, p := range opts.ReadOnly {
		rules = append(rules, landlock.RODirs(p).IgnoreIfMissing())
	}
	for _, port := range opts.BindTCP {
		rules = append(rules, landlock.BindTCP(port))
	}
	// File rules are required (any Landlock ABI refuses reading); the
	// newer network and ioctl rules are applied where the kernel has them.
	if v, err := llsys.LandlockGetABIVersion(); err != nil || v < 1 {
		return fmt.Errorf("landlock is unavailable, so the monitor cannot be confined "+
			"(clause 2.7); boot a kernel with landlock in lsm= (ABI %d): %v", v, err)
	}
	if err := landlock.V5.BestEffort().Restrict(rules...); err != nil {
		return fmt.Errorf("apply landlock rules: %w", err)
	}

	// Landlock came first, while root could still open the rule paths;
	// the no_new_privs it set does not hinder changing user. Go applies
	// these to every thread of the process (since Go 1.16).
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setgid(opts.GID); err != nil {
		return fmt.Errorf("change group to %d: %w", opts.GID, err)
	}
	if err := syscall.Setuid(opts.UID); err != nil {
		return fmt.Errorf("change user to %d: %w", opts.UID, err)
	}
	return nil
}

func chownTree(dir string, uid, gid int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("list state directory: %w", err)
	}
	for _, e := range entries {
		if err := os.Lchown(dir+"/"+e.Name(), uid, gid); err != nil {
			return fmt.Errorf("give %s to the monitor's user: %w", e.Name(), err)
		}
	}
	return nil
}
