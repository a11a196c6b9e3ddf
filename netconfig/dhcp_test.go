package netconfig

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestDHCPMessageRoundTrip(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0x5e, 0, 0x53, 0x07}
	m := &dhcpMessage{
		op: 2, xid: 0xdeadbeef, broadcast: true, chaddr: mac,
		ciaddr: netip.IPv4Unspecified(),
		yiaddr: netip.MustParseAddr("198.51.100.120"),
		options: map[byte][]byte{
			optMessageType: {dhcpAck},
			optSubnetMask:  {255, 255, 255, 0},
			optRouter:      {198, 51, 100, 2},
			optDNS:         {198, 51, 100, 53, 198, 51, 100, 54},
			optServerID:    {198, 51, 100, 2},
			optLeaseTime:   {0, 0, 0x0e, 0x10}, // 3600 s
		},
	}
	b := m.marshal()
	if len(b) < 240 || b[len(b)-1] != optEnd {
		t.Fatalf("marshal gave %d bytes ending in %d", len(b), b[len(b)-1])
	}
	got, err := parseDHCP(b)
	if err != nil {
		t.Fatalf("parseDHCP: %v", err)
	}
	if got.xid != m.xid || !got.broadcast || got.yiaddr != m.yiaddr ||
		!slices.Equal(got.chaddr, mac) || got.msgType() != dhcpAck {
		t.Errorf("parsed %+v, want %+v", got, m)
	}

	now := time.Unix(1_800_000_000, 0)
	l, err := got.lease(now)
	if err != nil {
		t.Fatalf("lease: %v", err)
	}
	want := Lease{
		Address: netip.MustParsePrefix("198.51.100.120/24"),
		Gateway: netip.MustParseAddr("198.51.100.2"),
		DNS: []netip.Addr{netip.MustParseAddr("198.51.100.53"),
			netip.MustParseAddr("198.51.100.54")},
		Server:   netip.MustParseAddr("198.51.100.2"),
		Acquired: now, Duration: time.Hour, Renew: 30 * time.Minute, Rebind: 3150 * time.Second,
	}
	if l.Address != want.Address || l.Gateway != want.Gateway || l.Server != want.Server ||
		!slices.Equal(l.DNS, want.DNS) || l.Duration != want.Duration ||
		l.Renew != want.Renew || l.Rebind != want.Rebind {
		t.Errorf("lease %+v, want %+v", l, want)
	}
}

func TestParseDHCPRefuses(t *testing.T) {
	good := (&dhcpMessage{op: 2, chaddr: make(net.HardwareAddr, 6),
		options: map[byte][]byte{optMessageType: {dhcpOffer}}}).marshal()
	cases := map[string][]byte{
		"short":            good[:200],
		"no cookie":        append(append([]byte{}, good[:236]...), 1, 2, 3, 4, 255),
		"option past end":  append(append([]byte{}, good[:240]...), optRouter, 8, 1, 2),
		"hardware addr 17": func() []byte { b := slices.Clone(good); b[2] = 17; return b }(),
	}
	for name, b := range cases {
		if _, err := parseDHCP(b); err == nil {
			t.Errorf("%s: parseDHCP accepted it", name)
		}
	}
	if _, err := parseDHCP(good); err != nil {
		t.Errorf("parseDHCP(good) = %v", err)
	}
}

func TestLeaseWithoutMaskOrServerIsRefused(t *testing.T) {
	m := &dhcpMessage{yiaddr: netip.MustParseAddr("198.51.100.9"), options: map[byte][]byte{
		optServerID: {198, 51, 100, 2}}}
	if _, err := m.lease(time.Now()); err == nil {
		t.Error("a lease without a subnet mask was accepted")
	}
	m.options = map[byte][]byte{optSubnetMask: {255, 255, 255, 0}}
	if _, err := m.lease(time.Now()); err == nil {
		t.Error("a lease without a server identifier was accepted")
	}
	m.options[optServerID] = []byte{198, 51, 100, 2}
	m.options[optSubnetMask] = []byte{255, 0, 255, 0}
	if _, err := m.lease(time.Now()); err == nil {
		t.Error("a lease with a non-contiguous mask was accepted")
	}
}

func TestLeaseTimes(t *testing.T) {
	m := &dhcpMessage{yiaddr: netip.MustParseAddr("198.51.100.9"), options: map[byte][]byte{
		optSubnetMask: {255, 255, 255, 0}, optServerID: {198, 51, 100, 2},
		optLeaseTime: {0, 0, 0, 10}, // 10 s: below the floor
		optRenewalT1: {0, 0, 0, 200},
	}}
	l, err := m.lease(time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	// T1 past the lease is ignored; the floor lifts the lease to minLease.
	if l.Duration != minLease || l.Renew != minLease/2 || l.Rebind != minLease*7/8 {
		t.Errorf("lease %v, renew %v, rebind %v", l.Duration, l.Renew, l.Rebind)
	}
}
