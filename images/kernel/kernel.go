// Package kernel obtains the appliance's Linux kernel: Debian's
// security-supported linux-image-amd64, downloaded with apt into a cache
// directory and unpacked with dpkg-deb, and resolves which of its modules the
// initramfs must load, in dependency order.
package kernel

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultPackage is the Debian package whose dependency names the kernel.
const DefaultPackage = "linux-image-amd64"

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	// Release is the kernel release, as uname -r prints it.
	Release string
	// Image is the path of the bootable kernel (vmlinuz-RELEASE), an EFI
	// stub executable.
	Image string
	// ModulesDir is lib/modules/RELEASE inside the unpacked package.
	ModulesDir string
	// Deb is the package file it was unpacked from.
	Deb string
}

// Fetch makes sure the kernel package named by pkg (a metapackage such as
// linux-image-amd64, or a versioned linux-image-RELEASE package) is in
// cacheDir, downloading it with apt-get download if needed, and returns the
// path of the .deb. A metapackage is resolved to the package it depends on;
// that needs apt's package lists (apt-get update) but no download of the
// metapackage's own contents. Without the lists, a kernel package already in
// cacheDir is used for DefaultPackage.
func Fetch(cacheDir, pkg string) (string, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("creating kernel cache %s: %w", cacheDir, err)
	}
	name, err := resolve(pkg)
	if err != nil {
		// Offline, or without apt's lists: a kernel fetched before will do
		// for the default package.
		if deb, ok := cached(cacheDir, "linux-image-[0-9]*"); ok && pkg == DefaultPackage {
			return deb, nil
		}
		return "", err
	}
	if deb, ok := cached(cacheDir, name); ok {
		return deb, nil
	}
	cmd := exec.Command("apt-get", "download", name)
	cmd.Dir = cacheDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s failed (run apt-get update?): %w\n%s",
			name, err, out)
	}
	deb, ok := cached(cacheDir, name)
	if !ok {
		return "", fmt.Errorf("apt-get download %s left no %s_*.deb in %s", name, name, cacheDir)
	}
	return deb, nil
}

// resolve follows a linux-image metapackage to the versioned package it
// depends on. A versioned name is returned unchanged.
func resolve(pkg string) (string, error) {
	if !strings.HasPrefix(pkg, "linux-image-") {
		return "", fmt.Errorf("kernel package %q: want a linux-image-* package", pkg)
	}
	out, err := exec.Command("apt-cache", "depends", "--no-recommends", "--no-suggests",
		pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s failed: %w", pkg, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return pkg, nil
}

// cached returns the last-named .deb of package name (a glob pattern) in
// dir.
func cached(dir, name string) (string, bool) {
	m, _ := filepath.Glob(filepath.Join(dir, name+"_*.deb"))
	if len(m) == 0 {
		return "", false
	}
	sort.Strings(m)
	return m[len(m)-1], true
}

// Unpack extracts deb into dir with dpkg-deb -x and locates the kernel
// image and modules inside. An existing unpacked tree in dir is reused.
func Unpack(deb, dir string) (*Kernel, error) {
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) == 0 {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", dir, err)
		}
		if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("dpkg-deb -x %s failed: %w\n%s", deb, err, out)
		}
		images, _ = filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("%s: want one boot/vmlinuz-*, found %d", deb, len(images))
	}
	rel := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	k := &Kernel{
		Release:    rel,
		Image:      images[0],
		ModulesDir: filepath.Join(dir, "lib", "modules", rel),
		Deb:        deb,
	}
	if _, err := os.Stat(k.ModulesDir); err != nil {
		return nil, fmt.Errorf("%s has no modules for %s: %w", deb, rel, err)
	}
	return k, nil
}

// Module is one loadable kernel module.
type Module struct {
	// Name is the module's name with underscores (virtio_blk).
	Name string
	// Path is the .ko file's path relative to the modules directory.
	Path string
}

// Resolve returns the modules named by want and all modules they depend on,
// each before its dependants, in a deterministic order. Names are matched
// with dashes and underscores treated alike. Names in optional that the
// kernel lacks as modules (because they are built in) are left out; a
// missing name in want is an error.
func (k *Kernel) Resolve(want, optional []string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(k.ModulesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(k.ModulesDir, p)
			index[modName(strings.TrimSuffix(d.Name(), ".ko"))] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("indexing modules of %s: %w", k.Release, err)
	}

	var order []Module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		rel, ok := index[name]
		if !ok {
			return fmt.Errorf("kernel %s has no module %s (needed by %s)", k.Release, name, from)
		}
		state[name] = 1
		deps, err := dependencies(filepath.Join(k.ModulesDir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: rel})
		return nil
	}
	for _, n := range want {
		if err := visit(modName(n), "the initramfs"); err != nil {
			return nil, err
		}
	}
	for _, n := range optional {
		if _, ok := index[modName(n)]; !ok {
			continue
		}
		if err := visit(modName(n), "the initramfs"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// dependencies reads the depends= entry of a module's .modinfo section.
func dependencies(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo of %s: %w", path, err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(string(v), ",") {
			if d != "" {
				deps = append(deps, modName(d))
			}
		}
		sort.Strings(deps)
		return deps, nil
	}
	return nil, nil
}
