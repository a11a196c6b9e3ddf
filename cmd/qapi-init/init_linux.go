package main

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qapi-az/qapi/gokrazy"
)

// Paths inside the initramfs; package images writes them.
const (
	modulesDir   = "/modules"
	modulesList  = "/modules/order"
	permTemplate = "/perm.ext4.gz" // the empty perm file system, gzip-compressed
	newRoot      = "/newroot"
	gokrazyInit  = "/gokrazy/init"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err := run(); err != nil {
		slog.Error("qapi-init: boot failed; rebooting in 10 s so the boot loader "+
			"can try the other slot", "err", err)
		time.Sleep(10 * time.Second)
		unix.Sync()
		unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		select {}
	}
}

func run() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil {
			return fmt.Errorf("mounting %s on %s: %w", m.typ, m.dst, err)
		}
	}

	if err := loadModules(); err != nil {
		return err
	}

	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	bootGUID, slot, err := gokrazy.ParseRoot(string(cmdline))
	if err != nil {
		return err
	}
	disk, tab, err := gokrazy.FindDisk(bootGUID, 30*time.Second)
	if err != nil {
		return err
	}
	slog.Info("qapi-init: found the disk", "disk", disk, "slot", slot,
		"partitions", len(tab.Partitions))

	preparePerm(disk, tab)

	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	root := gokrazy.PartitionDevice(disk, slot)
	if err := unix.Mount(root, newRoot, "squashfs", unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mounting root slot %s (squashfs): %w; "+
			"the slot may be empty or damaged: boot the other slot", root, err)
	}
	if _, err := os.Stat(newRoot + gokrazyInit); err != nil {
		return fmt.Errorf("root slot %s has no %s: %w", root, gokrazyInit, err)
	}
	return switchRoot()
}

// loadModules loads, in the listed order, the modules the image builder put
// into the initramfs. Modules that are already loaded are skipped.
func loadModules() error {
	f, err := os.Open(modulesList)
	if err != nil {
		return fmt.Errorf("reading the module list: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	n := 0
	for s.Scan() {
		name := strings.TrimSpace(s.Text())
		if name == "" {
			continue
		}
		if err := loadModule(filepath.Join(modulesDir, name+".ko")); err != nil {
			return err
		}
		n++
	}
	slog.Info("qapi-init: loaded modules", "count", n)
	return s.Err()
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("loading module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// switchRoot moves the kernel file systems into the new root, frees the
// initramfs and executes the gokrazy init as PID 1 of the new root.
func switchRoot() error {
	for _, d := range []string{"/dev", "/proc", "/sys"} {
		if err := unix.Mount(d, newRoot+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("moving %s into the root slot: %w", d, err)
		}
	}
	// The initramfs lives in RAM until its files are gone.
	for _, p := range []string{modulesDir, permTemplate, "/init"} {
		os.RemoveAll(p)
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving the root slot to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot into the root slot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	slog.Info("qapi-init: starting " + gokrazyInit)
	return syscall.Exec(gokrazyInit, []string{gokrazyInit}, os.Environ())
}
