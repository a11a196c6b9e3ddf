// Package browser drives Debian's headless Chromium for tests of the web
// pages the project serves (the monitoring station, the console): it loads
// a page as a person's browser would, runs its scripts, and returns the
// resulting DOM or a screenshot.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
)

// flags keep Chromium off the network except for the page itself: this
// machine's network is closed, and the background services would
// otherwise retry for a long time.
var flags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-dev-shm-usage", "--hide-scrollbars",
}

// Need returns the Chromium binary, skipping (failing in CI) t without it.
func Need(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(t, "chromium is not installed (make test-deps installs it)")
	return ""
}

func run(t testing.TB, args ...string) []byte {
	t.Helper()
	bin := Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append(append([]string{}, flags...),
		"--user-data-dir="+filepath.Join(t.TempDir(), "profile"))
	cmd := exec.CommandContext(ctx, bin, append(all, args...)...)
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr)
	}
	return out
}

// DumpDOM loads url and returns the DOM after its scripts ran.
func DumpDOM(t testing.TB, url string) string {
	t.Helper()
	return string(run(t, "--virtual-time-budget=3000", "--dump-dom", url))
}

// Screenshot loads url in a window of w x h pixels and writes a PNG to
// path.
func Screenshot(t testing.TB, url, path string, w, h int) {
	t.Helper()
	run(t, "--virtual-time-budget=3000", fmt.Sprintf("--window-size=%d,%d", w, h),
		"--screenshot="+path, url)
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("chromium wrote no screenshot at %s: %v", path, err)
	}
}
