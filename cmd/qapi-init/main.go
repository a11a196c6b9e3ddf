// Command qapi-init is the appliance's initramfs: the first program the
// kernel runs. It loads the storage, network and file-system modules the
// Debian kernel has as modules, finds the disk and root slot named on the
// kernel command line, grows the perm partition when the disk is larger
// than the image, writes an empty ext4 file system onto perm when it holds
// none and grows the file system to the partition's end, mounts the
// slot's squashfs read-only and hands over to the gokrazy init inside it.
//
// The command line names the slot as gokrazy does:
//
//	root=PARTUUID=<GUID of partition 1>/PARTNROFF=<1 for slot A, 2 for B>
//
// so that the gokrazy runtime, which reads the same command line, finds the
// same disk, its active slot and the perm partition (number 4).
//
// A failure is printed on the console with what to do; after a pause the
// machine reboots, so that the boot loader's boot counting can fall back to
// the other slot.
package main
