package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	gkruntime "github.com/gokrazy/gokrazy"
	"golang.org/x/sys/unix"

	"github.com/qapi-az/qapi/gokrazy"
	"github.com/qapi-az/qapi/netconfig"
)

func boot() error {
	if err := gkruntime.Boot(version); err != nil {
		return fmt.Errorf("gokrazy boot: %w", err)
	}
	in, err := gokrazy.Load(gokrazy.ManifestPath)
	if err != nil {
		return err
	}
	configureNetwork(in)

	var services []*gkruntime.Service
	for _, p := range in.Programs {
		cmd := exec.Command("/user/"+p.Name, p.Args...)
		cmd.Env = append(os.Environ(), p.Env...)
		services = append(services, gkruntime.NewService(cmd))
	}
	if err := gkruntime.SuperviseServices(services); err != nil {
		return fmt.Errorf("supervising the programs: %w", err)
	}
	if in.Health != "" {
		go watchHealth(in.Health)
	}
	return nil
}

// configureNetwork applies the machine's network configuration from
// /perm, or the image's when there is none or it does not load, retrying
// while the network drivers are still making the links.
func configureNetwork(in *gokrazy.Instance) {
	cfg := in.Network
	switch own, err := netconfig.Load(gokrazy.NetworkPath); {
	case err == nil:
		cfg = &own
	case !errors.Is(err, fs.ErrNotExist):
		slog.Error("qapi init: the machine's network configuration does not load; "+
			"using the image's: fix the file", "path", gokrazy.NetworkPath, "err", err)
	}
	if cfg == nil {
		slog.Warn("qapi init: no network configuration; the interfaces stay down")
		return
	}
	opts := netconfig.Options{}
	if len(cfg.Internal.DNS)+len(cfg.External.DNS) > 0 {
		// gokrazy links /tmp/resolv.conf to the kernel's; netconfig writes
		// a file in its place.
		os.Remove("/tmp/resolv.conf")
		opts.ResolvConf = "/tmp/resolv.conf"
	}
	var err error
	for range 50 {
		var changes []netconfig.Change
		changes, err = netconfig.Apply(context.Background(), *cfg, opts)
		if err == nil {
			slog.Info("qapi init: network configured", "changes", len(changes),
				"internal", cfg.Internal.Name, "external", cfg.External.Name)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	slog.Error("qapi init: the network configuration did not apply; the appliance is "+
		"not reachable: check the interface names and addresses", "err", err)
}

// watchHealth polls url until it answers 200, then reports the boot on the
// console with the memory in use, and marks the booted slot good.
func watchHealth(url string) {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	uptime, _ := os.ReadFile("/proc/uptime")
	total, avail := meminfo()
	slog.Info("qapi init: healthy", "uptimeSeconds", strings.Fields(string(uptime) + " ?")[0],
		"memTotalKiB", total, "memAvailableKiB", avail, "memUsedKiB", total-avail)
	if err := bless(); err != nil {
		slog.Error("qapi init: could not mark the booted slot good; the boot loader "+
			"will count this boot as a failed try", "err", err)
	}
}

// meminfo returns MemTotal and MemAvailable in KiB.
func meminfo() (total, avail int64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var v int64
		if _, err := fmt.Sscanf(s.Text(), "MemTotal: %d kB", &v); err == nil {
			total = v
		}
		if _, err := fmt.Sscanf(s.Text(), "MemAvailable: %d kB", &v); err == nil {
			avail = v
		}
	}
	return total, avail
}

// bless renames the booted slot's counted loader entry on the boot
// partition (qapi-a+2-1.conf) to its uncounted name (qapi-a.conf), which
// tells systemd-boot the slot is good.
func bless() error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	bootGUID, slot, err := gokrazy.ParseRoot(string(cmdline))
	if err != nil {
		return err
	}
	disk, _, err := gokrazy.FindDisk(bootGUID, 5*time.Second)
	if err != nil {
		return err
	}
	const mnt = "/run/qapi-boot"
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return err
	}
	dev := gokrazy.PartitionDevice(disk, gokrazy.BootPartition)
	if err := unix.Mount(dev, mnt, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
		""); err != nil {
		return fmt.Errorf("mounting the boot partition %s: %w", dev, err)
	}
	defer unix.Unmount(mnt, 0)
	dir := filepath.Join(mnt, "loader", "entries")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		good, ok := gokrazy.Blessed(e.Name(), slot)
		if !ok {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(dir, good)); err != nil {
			return err
		}
		unix.Sync()
		slog.Info("qapi init: marked the booted slot good", "entry", good)
		return nil
	}
	return nil // no counted entry: the slot was already good
}
