package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	gkruntime "github.com/gokrazy/gokrazy"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/qapi-az/qapi/gokrazy"
)

func boot() error {
	if err := gkruntime.Boot(version); err != nil {
		return fmt.Errorf("gokrazy boot: %w", err)
	}
	in, err := gokrazy.Load(gokrazy.ManifestPath)
	if err != nil {
		return err
	}
	for _, ifc := range in.Interfaces {
		if err := configure(ifc); err != nil {
			slog.Error("qapi init: interface not configured", "interface", ifc.Name, "err", err)
		}
	}

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

// configure brings an interface up with its address and default route.
func configure(ifc gokrazy.Interface) error {
	var link netlink.Link
	var err error
	for range 100 { // the driver may still be probing
		if link, err = netlink.LinkByName(ifc.Name); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("finding %s: %w", ifc.Name, err)
	}
	addr, err := netlink.ParseAddr(ifc.Address)
	if err != nil {
		return fmt.Errorf("address of %s: %w", ifc.Name, err)
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("adding %s to %s: %w", ifc.Address, ifc.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", ifc.Name, err)
	}
	if ifc.Gateway != "" {
		gw := net.ParseIP(ifc.Gateway)
		if gw == nil {
			return fmt.Errorf("gateway of %s: malformed %q", ifc.Name, ifc.Gateway)
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("default route via %s: %w", ifc.Gateway, err)
		}
	}
	slog.Info("qapi init: interface up", "interface", ifc.Name, "address", ifc.Address)
	return nil
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
