//go:build !linux

package sysinfo

import "errors"

func diskSpace(string) (uint64, uint64, error) {
	return 0, 0, errors.New("free space is measured on Linux only")
}
