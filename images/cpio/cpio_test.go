package cpio

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

func archive(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, err := range []error{
		w.Dir("etc", 0o755),
		w.File("etc/a", 0o644, []byte("hello")),
		w.File("init", 0o755, []byte("odd length contents")),
		w.Symlink("etc/b", "a"),
		w.CharDev("console", 0o600, 5, 1),
		w.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestDeterministic(t *testing.T) {
	a, b := archive(t), archive(t)
	if !bytes.Equal(a, b) {
		t.Fatal("the same entries gave different archives")
	}
	if len(a)%4 != 0 {
		t.Errorf("archive length %d is not a multiple of 4", len(a))
	}
}

func TestRejectsAbsolute(t *testing.T) {
	w := NewWriter(new(bytes.Buffer))
	if err := w.File("/init", 0o755, nil); err == nil {
		t.Error("File accepted an absolute name")
	}
}

// TestGNUCpio has GNU cpio, which nobody here wrote, extract the archive.
func TestGNUCpio(t *testing.T) {
	cpio := testenv.NeedCommand(t, "cpio")
	dir := t.TempDir()
	// The device node is only listed: making it would need root.
	cmd := exec.Command(cpio, "-i", "-d", "--quiet", "etc*", "init")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(archive(t))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for name, want := range map[string]string{
		"etc/a": "hello",
		"etc/b": "hello", // through the symlink
		"init":  "odd length contents",
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init mode = %v, %v; want 0755", fi.Mode(), err)
	}
	cmd = exec.Command(cpio, "-t", "-v", "--quiet")
	cmd.Stdin = bytes.NewReader(archive(t))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	if !bytes.Contains(out, []byte("crw-------")) || !bytes.Contains(out, []byte("5,")) {
		t.Errorf("cpio lists no character device 5,1 for console:\n%s", out)
	}
	if target, err := os.Readlink(filepath.Join(dir, "etc/b")); err != nil || target != "a" {
		t.Errorf("etc/b links to %q, %v; want a", target, err)
	}
}
