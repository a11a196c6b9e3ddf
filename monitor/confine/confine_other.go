//go:build !linux

package confine

import "errors"

// Apply fails: confinement uses Linux's Landlock.
func Apply(Options) error {
	return errors.New("the monitor can be confined on Linux only (clause 2.7)")
}
