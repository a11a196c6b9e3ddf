package gokrazy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/qapi-az/qapi/images/gpt"
)

// Partition numbers of the appliance disk, gokrazy's layout.
const (
	BootPartition  = 1 // the EFI system partition: boot loader, kernels, initramfs
	SlotAPartition = 2 // root slot A, squashfs
	SlotBPartition = 3 // root slot B, squashfs
	PermPartition  = 4 // perm, ext4: keys, configuration, message log
)

var rootRe = regexp.MustCompile(
	`(?:^|\s)root=PARTUUID=([0-9A-Fa-f-]{36})/PARTNROFF=([12])(?:\s|$)`)

// RootOption returns the kernel command-line option naming the root slot
// (partition 2 or 3) of the disk whose boot partition has GUID boot. It is
// the form both the initramfs and the gokrazy runtime understand.
func RootOption(boot gpt.GUID, partition int) string {
	return fmt.Sprintf("root=PARTUUID=%s/PARTNROFF=%d",
		strings.ToLower(boot.String()), partition-BootPartition)
}

// ParseRoot finds the option RootOption writes in a kernel command line and
// returns the boot partition's GUID and the root slot's partition number.
func ParseRoot(cmdline string) (boot gpt.GUID, partition int, err error) {
	m := rootRe.FindStringSubmatch(cmdline)
	if m == nil {
		return boot, 0, fmt.Errorf("kernel command line %q names no "+
			"root=PARTUUID=GUID/PARTNROFF=N: fix the loader entry's options line",
			strings.TrimSpace(cmdline))
	}
	boot, err = gpt.Parse(strings.ToUpper(m[1]))
	if err != nil {
		return boot, 0, err
	}
	off, _ := strconv.Atoi(m[2])
	return boot, BootPartition + off, nil
}

// SlotName returns "a" for partition 2 and "b" for partition 3.
func SlotName(partition int) string {
	if partition == SlotBPartition {
		return "b"
	}
	return "a"
}

// EntryName returns the systemd-boot loader entry file name of a slot with
// tries boot attempts left before the boot loader gives up on it
// and none used yet (qapi-a+3-0.conf); tries 0 names a slot already known
// good (qapi-a.conf).
func EntryName(partition, tries int) string {
	if tries <= 0 {
		return "qapi-" + SlotName(partition) + ".conf"
	}
	return fmt.Sprintf("qapi-%s+%d-0.conf", SlotName(partition), tries)
}

var countedRe = regexp.MustCompile(`^qapi-([ab])\+\d+(?:-\d+)?\.conf$`)

// Blessed returns the name a counted loader entry of the given slot takes
// once the slot has booted healthy (systemd-boot's boot counting: the
// "+LEFT-DONE" part is dropped), and whether name is such an entry.
func Blessed(name string, partition int) (string, bool) {
	m := countedRe.FindStringSubmatch(name)
	if m == nil || m[1] != SlotName(partition) {
		return "", false
	}
	return EntryName(partition, 0), true
}
