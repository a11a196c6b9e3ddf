package netconfig

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteIfChangedFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	etc, tmp := filepath.Join(dir, "etc"), filepath.Join(dir, "tmp")
	for _, d := range []string{etc, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// As on gokrazy: the link lives in a read-only directory and points at
	// a file that does not exist yet.
	link := filepath.Join(etc, "resolv.conf")
	if err := os.Symlink("../tmp/resolv.conf", link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(etc, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(etc, 0o755) })

	for i, want := range []bool{true, false} {
		changed, err := writeIfChanged(link, []byte("nameserver 192.0.2.53\n"))
		if err != nil || changed != want {
			t.Fatalf("write %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link: %v %v", link, fi, err)
	}
	b, err := os.ReadFile(filepath.Join(tmp, "resolv.conf"))
	if err != nil || string(b) != "nameserver 192.0.2.53\n" {
		t.Errorf("target holds %q, %v", b, err)
	}
}
