package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/qapi-az/qapi/images"
	"github.com/qapi-az/qapi/internal/testenv"
)

// TestFormatPermDevice runs formatPerm on a loop device, as the init runs
// it on the perm partition: it refuses while another holds the device
// open exclusively, formats a device of noise into a sound file system of
// the template's size (e2fsck), reports the device's size, and leaves a
// file system alone.
func TestFormatPermDevice(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/loop-control")
	for _, c := range []string{"losetup", "mke2fs", "e2fsck"} {
		testenv.NeedCommand(t, c)
	}
	dir := t.TempDir()
	template := filepath.Join(dir, "perm.ext4.gz")
	gz, err := images.PermTemplate(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(template, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 96 << 20
	noise := make([]byte, size)
	rand.NewChaCha8([32]byte{2}).Read(noise)
	img := filepath.Join(dir, "perm.img")
	if err := os.WriteFile(img, noise, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "--detach", dev).Run() })

	holder, err := os.OpenFile(dev, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := formatPerm(dev, template); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("formatPerm while another holds the device: %v; want EBUSY", err)
	}
	holder.Close()
	if b, _ := os.ReadFile(img); !bytes.Equal(b, noise) {
		t.Fatal("formatPerm wrote to a device another held")
	}

	sb, got, formatted, err := formatPerm(dev, template)
	if err != nil || !formatted || got != size || sb.bytes() != images.PermTemplateSize {
		t.Fatalf("formatPerm on noise: %+v, %d bytes, formatted %v, %v; want the "+
			"template written on a device of %d bytes", sb, got, formatted, err, size)
	}
	if out, err := exec.Command("e2fsck", "-fn", dev).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn on the formatted device: %v\n%s", err, out)
	}
	before, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	again, _, formatted, err := formatPerm(dev, template)
	if err != nil || formatted || again != sb {
		t.Errorf("formatPerm on a file system: %+v, formatted %v, %v; want it left alone",
			again, formatted, err)
	}
	if after, _ := os.ReadFile(img); !bytes.Equal(after, before) {
		t.Error("formatPerm wrote to a device that holds a file system")
	}
}
