package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/images/cpio"
	"github.com/qapi-az/qapi/images/gpt"
	"github.com/qapi-az/qapi/images/kernel"
)

// Defaults for Config.
const (
	DefaultCacheDir    = "/var/cache/qapi-image"
	DefaultSystemdBoot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	DefaultDiskID      = "qapi"
	DefaultBootSize    = 128 << 20
	DefaultSlotSize    = 256 << 20
	// BootTries is how many times systemd-boot tries a new slot before it
	// falls back to the other one.
	BootTries = 3
)

// epoch is the time stamped on every file in the image: 1 May 2014, the
// day of decision No. 118. FAT cannot store times before 1980.
var epoch = time.Date(2014, 5, 1, 0, 0, 0, 0, time.UTC)

// Modules the initramfs loads: Debian builds these as modules. The TPM
// drivers (tpm_tis, tpm_crb) are built in.
var (
	initramfsModules = []string{
		"crc32c_generic", // ext4 and jbd2 checksums; nothing would load it on demand
		"virtio_pci", "virtio_blk", "virtio_net",
		"squashfs", "ext4", "vfat", "nls_cp437", "nls_ascii", "loop",
		// The ACPI power button as an input device: gokrazy powers off
		// cleanly, /perm unmounted, when it is pressed.
		"button", "evdev",
		// nftables for package netconfig's firewall; nothing would load
		// its expression modules on demand.
		"nf_tables", "nft_ct", "nft_limit", "nft_objref",
	}
	optionalModules = []string{"virtio_rng", "nvme", "ahci", "sd_mod", "e1000e", "igb"}
)

// Config is what a disk image is built from.
type Config struct {
	// Output is the disk image file to write.
	Output string
	// Size is the disk's size in bytes; perm takes what the other
	// partitions leave.
	Size int64
	// Instance is what the image runs.
	Instance *gokrazy.Instance
	// Files are extra files for the root slot, by absolute path
	// (/etc/qapi/server.json).
	Files map[string][]byte
	// PermDir, if set, is a folder whose contents seed the perm file system
	// (for example qapi/qapi-server.json for a pre-registered server).
	PermDir string
	// ModuleDir is the qapi module's directory, where go build runs.
	ModuleDir string
	// Version names the build in loader entries and gokrazy's status.
	Version string

	// CacheDir keeps downloaded kernel packages (DefaultCacheDir).
	CacheDir string
	// KernelPackage is the Debian kernel package (kernel.DefaultPackage).
	KernelPackage string
	// KernelDeb, if set, is used instead of downloading KernelPackage.
	KernelDeb string
	// SystemdBoot is systemd-boot's EFI binary (DefaultSystemdBoot).
	SystemdBoot string
	// DiskID seeds every GUID and file-system UUID (DefaultDiskID).
	DiskID string
	// BootSize and SlotSize size the boot partition and each root slot.
	BootSize, SlotSize int64
	// KernelOptions are appended to the kernel command line.
	KernelOptions []string
	// Progress receives one line per step, and a line every 10 s while go
	// build runs; nil discards.
	Progress io.Writer
}

func (c *Config) defaults() {
	if c.CacheDir == "" {
		c.CacheDir = DefaultCacheDir
	}
	if c.KernelPackage == "" {
		c.KernelPackage = kernel.DefaultPackage
	}
	if c.SystemdBoot == "" {
		c.SystemdBoot = DefaultSystemdBoot
	}
	if c.DiskID == "" {
		c.DiskID = DefaultDiskID
	}
	if c.BootSize == 0 {
		c.BootSize = DefaultBootSize
	}
	if c.SlotSize == 0 {
		c.SlotSize = DefaultSlotSize
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// Result describes a built image.
type Result struct {
	Table     *gpt.Table
	Kernel    string // the kernel release
	RootBytes int64  // size of the root squashfs
	InitBytes int64  // size of the initramfs
}

// Build compiles the programs and writes the disk image. It is
// BuildPrograms followed by Assemble, with a temporary directory for the
// programs.
func Build(ctx context.Context, c Config) (*Result, error) {
	c.defaults()
	// A disk size that does not fit is told before the programs are built.
	if _, err := layout(c); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "qapi-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bin")
	if err := BuildPrograms(ctx, c, bin); err != nil {
		return nil, err
	}
	return Assemble(ctx, c, bin)
}

// Names of the built programs that are not in the Instance.
const (
	initName      = "init"      // gokrazy/init, the root slot's PID 1
	initramfsInit = "qapi-init" // cmd/qapi-init, the initramfs's /init
)

// permTemplateName is where in the initramfs cmd/qapi-init finds the
// gzip-compressed empty perm file system.
const permTemplateName = "perm.ext4.gz"

// BuildPrograms compiles the init, the initramfs init and every program of
// c.Instance, with CGO_ENABLED=0 for linux/amd64, into dir, each named as
// it is installed. While go build runs, c.Progress gets a line every
// buildReport with the packages compiled so far, and one when it ends.
func BuildPrograms(ctx context.Context, c Config, dir string) error {
	c.defaults()
	if err := c.Instance.Validate(); err != nil {
		return err
	}
	byPkg := map[string][]string{
		"github.com/qapi-az/qapi/gokrazy/init":  {initName},
		"github.com/qapi-az/qapi/cmd/qapi-init": {initramfsInit},
	}
	for _, p := range c.Instance.Programs {
		byPkg[p.Package] = append(byPkg[p.Package], p.Name)
	}
	pkgs := make([]string, 0, len(byPkg))
	for p := range byPkg {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)

	out := filepath.Join(dir, "pkg")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(c.Progress, "building %d programs (CGO_ENABLED=0)\n", len(pkgs))
	// -v names each package as it is compiled: the progress.
	args := []string{"build", "-v", "-o", out + "/", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.version=" + c.Version}
	cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
	cmd.Dir = c.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	log := &buildOutput{}
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting go build: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(buildReport)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			n, last := log.status()
			fmt.Fprintf(c.Progress, "go build: %d packages compiled so far, the last %s "+
				"(%s)\n", n, last, time.Since(start).Round(time.Second))
		}
	}
	if err != nil {
		return fmt.Errorf("go build failed: %w\n%s", err, log.errors())
	}
	n, _ := log.status()
	fmt.Fprintf(c.Progress, "go build: compiled %d packages in %s\n", n,
		time.Since(start).Round(time.Second))
	for _, p := range pkgs {
		built := filepath.Join(out, filepath.Base(p))
		for _, name := range byPkg[p] {
			if err := copyFile(built, filepath.Join(dir, name), 0o755); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(out)
}

// buildReport is how often BuildPrograms says how far go build is.
const buildReport = 10 * time.Second

// buildOutput collects what go build -v prints: it counts the lines that
// name a package being compiled and keeps the others, the errors.
type buildOutput struct {
	mu       sync.Mutex
	partial  []byte // a line not yet ended
	packages int
	last     string
	errs     strings.Builder
}

func (b *buildOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.partial = append(b.partial, p...)
	for {
		i := bytes.IndexByte(b.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		b.line(string(b.partial[:i]))
		b.partial = b.partial[i+1:]
	}
}

// line takes one line: an import path (no blank, no colon) names a
// package; anything else (a compiler's "# pkg" header or "file:line:
// message") is an error to report.
func (b *buildOutput) line(l string) {
	if l != "" && !strings.ContainsAny(l, " \t:") {
		b.packages++
		b.last = l
		return
	}
	b.errs.WriteString(l + "\n")
}

// status returns how many packages were compiled so far and the last one.
func (b *buildOutput) status() (int, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.packages, b.last
}

// errors returns every line that named no package, and an unended last
// line.
func (b *buildOutput) errors() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.errs.String() + string(b.partial)
}

// Assemble writes the disk image from programs built by BuildPrograms into
// bin.
func Assemble(ctx context.Context, c Config, bin string) (*Result, error) {
	c.defaults()
	if err := c.Instance.Validate(); err != nil {
		return nil, err
	}
	tab, err := layout(c)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "qapi-assemble-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	k, err := fetchKernel(c)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Progress, "kernel %s\n", k.Release)

	res := &Result{Table: tab, Kernel: k.Release}
	template, err := PermTemplate(ctx, c.DiskID)
	if err != nil {
		return nil, fmt.Errorf("making the empty perm file system: %w", err)
	}
	initrd := filepath.Join(work, "initrd.img")
	if res.InitBytes, err = writeInitramfs(c, k, filepath.Join(bin, initramfsInit),
		template, initrd); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Progress, "initramfs: %d bytes, with an empty perm file system of "+
		"%d bytes (%d compressed)\n", res.InitBytes, PermTemplateSize, len(template))

	root := filepath.Join(work, "root.squashfs")
	if res.RootBytes, err = writeRoot(ctx, c, bin, filepath.Join(work, "root"),
		root); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Progress, "root slot: %d bytes of %d\n", res.RootBytes, c.SlotSize)
	if res.RootBytes > tab.Partitions[1].Size() {
		return nil, fmt.Errorf("root file system (%d bytes) does not fit a slot of %d bytes: "+
			"raise the slot size", res.RootBytes, tab.Partitions[1].Size())
	}

	esp := filepath.Join(work, "boot.fat")
	if err := writeBoot(ctx, c, tab, k.Image, initrd, esp); err != nil {
		return nil, err
	}
	fmt.Fprintln(c.Progress, "boot partition: systemd-boot, loader entry "+
		gokrazy.EntryName(gokrazy.SlotAPartition, BootTries))

	tmpOut := c.Output + ".tmp"
	f, err := os.OpenFile(tmpOut, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmpOut)
	defer f.Close()
	if err := f.Truncate(c.Size); err != nil {
		return nil, err
	}
	if err := tab.WriteTo(f); err != nil {
		return nil, err
	}
	for _, part := range []struct {
		src string
		p   gpt.Partition
	}{{esp, tab.Partitions[0]}, {root, tab.Partitions[1]}} {
		if err := copyInto(f, part.src, part.p.Offset()); err != nil {
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	fmt.Fprintln(c.Progress, "perm: ext4")
	if err := writePerm(ctx, c, tmpOut, tab.Partitions[3]); err != nil {
		return nil, err
	}
	if err := os.Rename(tmpOut, c.Output); err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Progress, "wrote %s (%d bytes)\n", c.Output, c.Size)
	return res, nil
}

// layout places the four partitions on a disk of c.Size bytes, 1 MiB
// aligned.
func layout(c Config) (*gpt.Table, error) {
	const mib = 1 << 20
	const align = mib / gpt.SectorSize
	if c.Size%mib != 0 || c.BootSize%mib != 0 || c.SlotSize%mib != 0 {
		return nil, fmt.Errorf("disk, boot and slot sizes must be whole MiB")
	}
	minSize := c.BootSize + 2*c.SlotSize + 64*mib + 2*mib
	if c.Size < minSize {
		return nil, fmt.Errorf("disk size %d MiB is too small: want at least %d MiB",
			c.Size/mib, minSize/mib)
	}
	t := &gpt.Table{DiskGUID: gpt.Derive(c.DiskID + "/disk"), Sectors: uint64(c.Size) /
		gpt.SectorSize}
	next := uint64(align)
	add := func(name string, typ gpt.GUID, sectors uint64) {
		t.Partitions = append(t.Partitions, gpt.Partition{
			Type: typ, GUID: gpt.Derive(c.DiskID + "/" + name),
			FirstLBA: next, LastLBA: next + sectors - 1, Name: name,
		})
		next += sectors
	}
	add("boot", gpt.TypeESP, uint64(c.BootSize)/gpt.SectorSize)
	add("root-a", gpt.TypeLinuxData, uint64(c.SlotSize)/gpt.SectorSize)
	add("root-b", gpt.TypeLinuxData, uint64(c.SlotSize)/gpt.SectorSize)
	add("perm", gpt.TypeLinuxData, (t.LastUsable()+1-next)/align*align)
	return t, t.Validate()
}

func fetchKernel(c Config) (*kernel.Kernel, error) {
	deb := c.KernelDeb
	if deb == "" {
		var err error
		if deb, err = kernel.Fetch(c.CacheDir, c.KernelPackage); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(c.CacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	return kernel.Unpack(deb, dir)
}

// writeInitramfs writes a gzip-compressed newc archive holding the
// initramfs init, the modules and their load order, and the empty perm
// file system (PermTemplate) the init writes onto a perm partition that
// holds none.
func writeInitramfs(c Config, k *kernel.Kernel, initBin string, permTemplate []byte,
	out string) (int64, error) {
	mods, err := k.Resolve(initramfsModules, optionalModules)
	if err != nil {
		return 0, err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	w := cpio.NewWriter(zw)
	var werr error // the first error; the writer writes to memory
	add := func(err error) {
		if werr == nil {
			werr = err
		}
	}
	for _, d := range []string{"dev", "proc", "sys", "newroot", "modules"} {
		add(w.Dir(d, 0o755))
	}
	add(w.CharDev("dev/console", 0o600, 5, 1))
	init, err := os.ReadFile(initBin)
	if err != nil {
		return 0, err
	}
	add(w.File("init", 0o755, init))
	add(w.File(permTemplateName, 0o644, permTemplate))
	var order strings.Builder
	for _, m := range mods {
		b, err := os.ReadFile(filepath.Join(k.ModulesDir, m.Path))
		if err != nil {
			return 0, err
		}
		add(w.File("modules/"+m.Name+".ko", 0o644, b))
		order.WriteString(m.Name + "\n")
	}
	add(w.File("modules/order", 0o644, []byte(order.String())))
	add(w.Close())
	add(zw.Close())
	if werr != nil {
		return 0, fmt.Errorf("writing the initramfs: %w", werr)
	}
	return int64(buf.Len()), os.WriteFile(out, buf.Bytes(), 0o644)
}

// writeRoot lays out the root slot's tree in dir and packs it with
// mksquashfs into out.
func writeRoot(ctx context.Context, c Config, bin, dir, out string) (int64, error) {
	in, err := c.Instance.Marshal()
	if err != nil {
		return 0, err
	}
	files := map[string][]byte{
		"/etc/hostname":      []byte(c.Instance.Hostname + "\n"),
		"/etc/hosts":         []byte("127.0.0.1 localhost\n::1 localhost\n"),
		gokrazy.ManifestPath: in,
		"/etc/qapi/version":  []byte(c.Version + "\n"),
		"/etc/passwd":        []byte("root:x:0:0:root:/:/bin/false\n"),
		"/etc/group":         []byte("root:x:0:\n"),
	}
	for p, b := range c.Files {
		if !strings.HasPrefix(p, "/") {
			return 0, fmt.Errorf("root file %q: want an absolute path", p)
		}
		files[p] = b
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "perm", "run", "user",
		"gokrazy/programs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return 0, err
		}
	}
	for p, b := range files {
		dst := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return 0, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return 0, err
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return 0, err
		}
	}
	links := map[string]string{
		"etc/resolv.conf": "/tmp/resolv.conf",
		"var":             "/perm/var",
	}
	if err := copyFile(filepath.Join(bin, initName), filepath.Join(dir, "gokrazy/init"),
		0o755); err != nil {
		return 0, err
	}
	for _, p := range c.Instance.Programs {
		if err := copyFile(filepath.Join(bin, p.Name),
			filepath.Join(dir, "gokrazy/programs", p.Name), 0o755); err != nil {
			return 0, err
		}
		links["user/"+p.Name] = "/gokrazy/init"
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, l)); err != nil {
			return 0, err
		}
	}
	cmd := exec.CommandContext(ctx, "mksquashfs", dir, out, "-noappend", "-no-progress",
		"-quiet", "-all-root", "-no-xattrs", "-reproducible", "-mkfs-time", "0",
		"-all-time", "0", "-comp", "gzip")
	if b, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("mksquashfs (Debian squashfs-tools) failed: %w\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// writeBoot makes the FAT32 boot partition: systemd-boot as the removable
// media loader, loader.conf, the slot A entry with boot counting, and slot
// A's kernel and initramfs.
//
// TODO: updates that write slot B with its own entry, and a test of the fallback.
func writeBoot(ctx context.Context, c Config, tab *gpt.Table, vmlinuz, initrd,
	out string) error {
	p := tab.Partitions[0]
	volID := fmt.Sprintf("%X", tab.Partitions[0].GUID[:4])
	if b, err := exec.CommandContext(ctx, "mkfs.vfat", "-C", "-F", "32", "-n", "QAPI-BOOT",
		"-i", volID, "--invariant", out, fmt.Sprint(p.Size()/1024)).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.vfat (Debian dosfstools) failed: %w\n%s", err, b)
	}

	slot := gokrazy.SlotAPartition
	name := "qapi-" + gokrazy.SlotName(slot)
	opts := append([]string{gokrazy.RootOption(tab.Partitions[0].GUID, slot),
		"console=tty0", "console=ttyS0,115200", "panic=10"}, c.KernelOptions...)
	entry := fmt.Sprintf("title Qapi %s, slot %s\nversion %s\nlinux /%s/vmlinuz\n"+
		"initrd /%s/initrd.img\noptions %s\n", c.Version, strings.ToUpper(gokrazy.SlotName(slot)),
		c.Version, name, name, strings.Join(opts, " "))
	// The default names the slot by prefix, so it matches the entry whether
	// or not it still carries a boot counter.
	loaderConf := fmt.Sprintf("timeout 0\ndefault %s*\neditor no\n", name)

	stage := out + ".d"
	files := []struct {
		dst  string
		src  string
		data []byte
	}{
		{"EFI/BOOT/BOOTX64.EFI", c.SystemdBoot, nil},
		{"loader/loader.conf", "", []byte(loaderConf)},
		{"loader/entries/" + gokrazy.EntryName(slot, BootTries), "", []byte(entry)},
		{name + "/vmlinuz", vmlinuz, nil},
		{name + "/initrd.img", initrd, nil},
	}
	dirs := []string{"EFI", "EFI/BOOT", "loader", "loader/entries", name}
	for _, d := range dirs {
		if b, err := mtools(ctx, "mmd", "-i", out, "::"+d); err != nil {
			return fmt.Errorf("mmd %s failed: %w\n%s", d, err, b)
		}
	}
	for i, f := range files {
		src := f.src
		if src == "" {
			src = filepath.Join(stage, fmt.Sprint(i))
			if err := os.MkdirAll(stage, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(src, f.data, 0o644); err != nil {
				return err
			}
		} else {
			// mcopy -m keeps the source's time; copy to stamp it with epoch.
			dst := filepath.Join(stage, fmt.Sprint(i))
			if err := copyFile(src, dst, 0o644); err != nil {
				return err
			}
			src = dst
		}
		if err := os.Chtimes(src, epoch, epoch); err != nil {
			return err
		}
		if b, err := mtools(ctx, "mcopy", "-m", "-i", out, src, "::"+f.dst); err != nil {
			return fmt.Errorf("mcopy %s failed: %w\n%s", f.dst, err, b)
		}
	}
	return os.RemoveAll(stage)
}

func mtools(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", epoch.Unix()))
	return cmd.CombinedOutput()
}

// writePerm makes the ext4 perm file system in place, at the partition's
// offset, with a UUID and hash seed derived from the disk identity and a
// fixed creation time.
func writePerm(ctx context.Context, c Config, img string, p gpt.Partition) error {
	var seedArgs []string
	if c.PermDir != "" {
		stage, err := os.MkdirTemp("", "qapi-perm-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(stage)
		if err := copyTree(c.PermDir, stage); err != nil {
			return fmt.Errorf("seeding perm from %s: %w", c.PermDir, err)
		}
		seedArgs = []string{"-d", stage}
	}
	return mke2fs(ctx, c.DiskID, seedArgs, fmt.Sprintf("offset=%d,lazy_itable_init=1",
		p.Offset()), img, p.Size())
}

// PermTemplateSize is the size of the empty perm file system the
// initramfs writes onto a perm partition that holds none; the init then
// grows it to the partition's end.
const PermTemplateSize = 64 << 20

// PermTemplate returns the gzip-compressed image of an empty ext4 file
// system of PermTemplateSize bytes, labelled and identified as the perm
// file system of the disk identity diskID. The same diskID gives the same
// bytes. Its layout suits online growth to a disk of any size: it
// reserves group descriptor blocks for growth to 4 TiB (beyond that the
// kernel converts it to meta_bg as it grows); its journal of 16 MiB admits
// transactions of 1024 blocks, and the kernel grows the file system in
// transactions that write the whole reserve (511 blocks) and a few more,
// so a reserve for 8 TiB (1023 blocks) would make growth fail; and it has
// as many inodes per block group as mke2fs gives a full-sized perm, 8192,
// since every group added by growth gets the first group's count.
//
// TODO: growth of perm past 4 TiB, through the kernel's conversion to meta_bg, is not tested.
func PermTemplate(ctx context.Context, diskID string) ([]byte, error) {
	if diskID == "" {
		diskID = DefaultDiskID
	}
	dir, err := os.MkdirTemp("", "qapi-perm-template-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "perm.ext4")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		return nil, err
	}
	const growTo = 4 << 40 // bytes the reserved group descriptors address
	if err := mke2fs(ctx, diskID, []string{"-N", "8192", "-J", "size=16"},
		fmt.Sprintf("resize=%d,lazy_itable_init=0", growTo/4096), img,
		PermTemplateSize); err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// mke2fs runs Debian's mke2fs to make the perm file system of size bytes
// in img, with 4 KiB blocks, a UUID and hash seed derived from diskID, a
// fixed creation time and the given extra options and extended options.
func mke2fs(ctx context.Context, diskID string, args []string, ext, img string,
	size int64) error {
	uuid := strings.ToLower(gpt.Derive(diskID + "/perm-fs").String())
	seed := strings.ToLower(gpt.Derive(diskID + "/perm-hash").String())
	cmd := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096",
		"-L", "perm", "-U", uuid)
	cmd.Args = append(cmd.Args, args...)
	cmd.Args = append(cmd.Args,
		"-E", fmt.Sprintf("root_owner=0:0,hash_seed=%s,nodiscard,%s", seed, ext),
		img, fmt.Sprint(size/4096))
	cmd.Env = append(os.Environ(), fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", epoch.Unix()))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mke2fs (Debian e2fsprogs) failed: %w\n%s", err, b)
	}
	return nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// copyInto copies src into f at off, skipping blocks of zeros: f is a new
// sparse file, so they read as zeros already and the image stays sparse.
func copyInto(f *os.File, src string, off int64) error {
	s, err := os.Open(src)
	if err != nil {
		return err
	}
	defer s.Close()
	buf := make([]byte, 64<<10)
	for pos := off; ; {
		n, err := io.ReadFull(s, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := f.WriteAt(buf[:n], pos); werr != nil {
				return fmt.Errorf("writing %s into the image: %w", filepath.Base(src), werr)
			}
		}
		pos += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", filepath.Base(src), err)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// copyTree copies the regular files and folders under src into dst, with
// every time set to epoch so the file system made from it is reproducible.
func copyTree(src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			dirs = append(dirs, to)
			return os.MkdirAll(to, fi.Mode().Perm())
		case fi.Mode().IsRegular():
			if err := copyFile(p, to, fi.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(to, epoch, epoch)
		default:
			return fmt.Errorf("%s: only files and folders can seed perm", p)
		}
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], epoch, epoch); err != nil {
			return err
		}
	}
	return nil
}
