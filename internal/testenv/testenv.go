// Package testenv gates tests on what the machine has: root, a command,
// a device. Where the thing is missing the test is skipped with a one-line
// reason, except in CI (CI=true), where a missing thing fails the test:
// CI installs everything the suite needs, so a skip there hides a defect.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (the environment variable
// CI is "true").
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t with reason, or fails it in CI.
func Missing(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI must provide this, but: %s", reason)
	}
	t.Skip(reason)
}

// NeedRoot skips (or in CI fails) t unless the process runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// NeedCommand returns the path of the named command, skipping (or in CI
// failing) t when it is not on PATH or at the given absolute path.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed (make test-deps installs it)")
	}
	return p
}

// NeedFile skips (or in CI fails) t unless path exists.
func NeedFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path+" is missing (make test-deps installs it)")
	}
}

// Short skips t in -short mode with reason: for slow tests (QEMU boots,
// load runs) that a developer may leave out while iterating.
func Short(t testing.TB, reason string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: " + reason)
	}
}
