package netconfig

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func changes(steps []step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.Change.String())
	}
	return out
}

func TestPlanLink(t *testing.T) {
	want := Interface{
		Name:      "eth1",
		Addresses: []string{"192.0.2.10/24", "2001:db8::10/64"},
		Gateway:   "192.0.2.1",
		Routes:    []Route{{Destination: "198.51.100.0/24"}},
		MTU:       9000,
	}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	applied := linkState{
		exists: true, mtu: 9000, up: true,
		addrs: []netip.Prefix{p("2001:db8::10/64"), p("192.0.2.10/24")},
		routes: []route{
			{dst: p("198.51.100.0/24")},
			{dst: p("0.0.0.0/0"), via: a("192.0.2.1")},
		},
	}

	cases := []struct {
		name string
		cur  linkState
		want []string
	}{
		{"as configured", applied, nil},
		{"fresh link", linkState{exists: true, mtu: 1500, slaac: true}, []string{
			"external eth1: set-mtu 9000",
			"external eth1: set-up",
			"external eth1: ignore-router-advertisements",
			"external eth1: add-address 192.0.2.10/24",
			"external eth1: add-address 2001:db8::10/64",
			"external eth1: replace-route 0.0.0.0/0 via 192.0.2.1",
			"external eth1: replace-route 198.51.100.0/24 on-link",
		}},
		{"stale address and route, other gateway", linkState{
			exists: true, mtu: 9000, up: true,
			addrs: []netip.Prefix{p("192.0.2.10/24"), p("2001:db8::10/64"), p("192.0.2.99/24")},
			routes: []route{
				{dst: p("0.0.0.0/0"), via: a("192.0.2.254")},
				{dst: p("198.51.100.0/24")},
				{dst: p("203.0.113.0/24"), via: a("192.0.2.1")},
			},
		}, []string{
			"external eth1: remove-address 192.0.2.99/24",
			"external eth1: remove-route 203.0.113.0/24 via 192.0.2.1",
			"external eth1: replace-route 0.0.0.0/0 via 192.0.2.1",
		}},
		{"address with another prefix length", func() linkState {
			s := applied
			s.addrs = []netip.Prefix{p("192.0.2.10/25"), p("2001:db8::10/64")}
			return s
		}(), []string{
			"external eth1: add-address 192.0.2.10/24",
			"external eth1: remove-address 192.0.2.10/25",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := changes(planLink(RoleExternal, want, "eth1", tc.cur))
			if !slices.Equal(got, tc.want) {
				t.Errorf("planLink =\n%s\nwant\n%s", strings.Join(got, "\n"),
					strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestPlanLinkVLANAndDHCP(t *testing.T) {
	want := Interface{Name: "eth0", VLAN: 42, DHCP: true}
	got := changes(planLink(RoleInternal, want, "eth0.42", linkState{
		addrs: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24")}}))
	// The DHCP client owns addresses and routes: Apply keeps off them.
	wantSteps := []string{"internal eth0.42: create-vlan 42", "internal eth0.42: set-up"}
	if !slices.Equal(got, wantSteps) {
		t.Errorf("planLink = %q, want %q", got, wantSteps)
	}
}

func TestResolvConf(t *testing.T) {
	cfg := Config{
		Internal: Interface{DNS: []string{"198.51.100.53", "2001:db8::53"}},
		External: Interface{DNS: []string{"192.0.2.53", "198.51.100.53"}},
	}
	got := nameservers(resolvConf(cfg, nil))
	want := []string{"198.51.100.53", "2001:db8::53", "192.0.2.53"}
	if !slices.Equal(got, want) {
		t.Errorf("name servers %q, want %q", got, want)
	}
}

func nameservers(resolvConf string) []string {
	var out []string
	for _, line := range strings.Split(resolvConf, "\n") {
		if s, ok := strings.CutPrefix(line, "nameserver "); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestAssess(t *testing.T) {
	cases := []struct {
		name string
		s    LinkStatus
		want string // in the warning; "" for none
	}{
		{"1G full", LinkStatus{Up: true, SpeedMbps: 1000, Duplex: DuplexFull}, ""},
		{"10G full", LinkStatus{Up: true, SpeedMbps: 10000, Duplex: DuplexFull}, ""},
		{"down", LinkStatus{SpeedMbps: 1000, Duplex: DuplexFull}, "link is down"},
		{"100M full", LinkStatus{Up: true, SpeedMbps: 100, Duplex: DuplexFull},
			"100 Mbit/s, below the 1 Gbit/s clause 5.5 requires"},
		{"999M", LinkStatus{Up: true, SpeedMbps: 999, Duplex: DuplexFull}, "999 Mbit/s"},
		{"1G half", LinkStatus{Up: true, SpeedMbps: 1000, Duplex: DuplexHalf},
			"half duplex"},
		{"speed unknown", LinkStatus{Up: true, Duplex: DuplexFull}, "unknown"},
		{"duplex unknown", LinkStatus{Up: true, SpeedMbps: 1000, Duplex: DuplexUnknown},
			"unknown"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Assess(tc.s)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("Assess(%+v) = %q, want %q", tc.s, got, tc.want)
			}
		})
	}
}
