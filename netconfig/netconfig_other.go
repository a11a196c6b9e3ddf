//go:build !linux

package netconfig

import (
	"context"
	"errors"
)

// errUnsupported is returned off Linux: netlink and nftables are Linux's.
var errUnsupported = errors.New("netconfig: network configuration needs Linux")

// Apply makes the machine's network match cfg; off Linux it fails.
func Apply(ctx context.Context, cfg Config, opts Options) ([]Change, error) {
	return nil, errUnsupported
}

// ApplyFirewall replaces the firewall table; off Linux it fails.
func ApplyFirewall(cfg Config, internal, external string) (bool, error) {
	return false, errUnsupported
}

// Counters reads the firewall's drop counters; off Linux it fails.
func Counters() ([]DropCounter, error) { return nil, errUnsupported }

// Status reports the roles' links; off Linux it fails.
func Status(cfg Config) ([]LinkStatus, error) { return nil, errUnsupported }

// Watch reports link changes; off Linux it fails at once.
func Watch(ctx context.Context, cfg Config, fn func(LinkEvent)) error { return errUnsupported }

// RunDHCP keeps a DHCP lease; off Linux it fails at once.
func RunDHCP(ctx context.Context, cfg Config, opts Options, report func(Change)) error {
	return errUnsupported
}
