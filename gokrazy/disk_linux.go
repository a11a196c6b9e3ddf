package gokrazy

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/qapi-az/qapi/images/gpt"
)

// FindDisk waits up to timeout for a disk whose first partition has the
// GUID boot and returns its device path (/dev/vda) and partition table.
func FindDisk(boot gpt.GUID, timeout time.Duration) (string, *gpt.Table, error) {
	deadline := time.Now().Add(timeout)
	for {
		names, _ := os.ReadDir("/sys/block")
		for _, n := range names {
			name := n.Name()
			if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
				continue
			}
			dev := "/dev/" + name
			tab, err := ReadTable(dev)
			if err != nil || len(tab.Partitions) < PermPartition {
				continue
			}
			if tab.Partitions[0].GUID == boot {
				return dev, tab, nil
			}
		}
		if time.Now().After(deadline) {
			return "", nil, fmt.Errorf("no disk has a first partition with GUID %s after %v: "+
				"is the disk attached, and its storage driver in the initramfs?", boot, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ReadTable reads the partition table of a disk device.
func ReadTable(dev string) (*gpt.Table, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		return nil, err
	}
	return gpt.Read(f, size)
}

// PartitionDevice returns the device path of partition n of disk, after the
// kernel's naming: /dev/vda2, but /dev/nvme0n1p2.
func PartitionDevice(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}
