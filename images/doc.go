// Package images builds the appliance's disk image: a GPT disk with
// gokrazy's partition order, so that the gokrazy runtime finds its
// partitions unchanged.
//
//	1 boot    FAT32 EFI system partition: systemd-boot, loader entries with
//	          boot counting, and per slot the Debian kernel and an initramfs
//	2 root A  squashfs: /gokrazy/init, the programs, /etc
//	3 root B  squashfs, written by updates (empty in a new image)
//	4 perm    ext4: keys, configuration, message log; grown to the disk's
//	          end at first boot
//
// The same inputs give the same bytes: GUIDs are derived from the disk
// identity, file systems are made with fixed times, UUIDs and seeds, and the
// programs are built with -trimpath and without VCS stamps.
//
// Building needs, on the build host, Debian's systemd-boot-efi, squashfs-tools,
// dosfstools, mtools, e2fsprogs, and apt access for the kernel package.
package images
