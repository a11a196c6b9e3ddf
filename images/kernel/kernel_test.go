package kernel

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
)

// TestDebianKernel fetches (or finds in the cache) Debian's kernel package
// and checks that Resolve puts every module after the modules it depends
// on, as finit_module needs.
func TestDebianKernel(t *testing.T) {
	testenv.NeedRoot(t)
	for _, c := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		testenv.NeedCommand(t, c)
	}
	cache := "/var/cache/qapi-image"
	deb, err := Fetch(cache, DefaultPackage)
	if err != nil {
		t.Fatal(err)
	}
	k, err := Unpack(deb, filepath.Join(cache, "unpacked",
		strings.TrimSuffix(filepath.Base(deb), ".deb")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.Image); err != nil {
		t.Fatal(err)
	}

	mods, err := k.Resolve([]string{"virtio_blk", "ext4", "vfat"}, []string{"no_such_module"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.Name)
	}
	for _, m := range mods {
		deps, err := dependencies(filepath.Join(k.ModulesDir, m.Path))
		if err != nil {
			t.Fatal(err)
		}
		at := slices.Index(names, m.Name)
		for _, d := range deps {
			if i := slices.Index(names, d); i < 0 || i > at {
				t.Errorf("%s depends on %s, which is not loaded before it: %v", m.Name, d, names)
			}
		}
	}
	for _, want := range []string{"virtio", "virtio_blk", "jbd2", "ext4", "fat", "vfat"} {
		if !slices.Contains(names, want) {
			t.Errorf("Resolve left out %s: %v", want, names)
		}
	}
	if slices.Contains(names, "no_such_module") {
		t.Error("an absent optional module was listed")
	}
	if _, err := k.Resolve([]string{"no_such_module"}, nil); err == nil {
		t.Error("Resolve accepted a missing module that is wanted")
	}
}
