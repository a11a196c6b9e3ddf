package netconfig

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Options are the settings of Apply that are not part of the configuration.
type Options struct {
	// ResolvConf is the path of the resolv.conf file Apply writes the name
	// servers to; empty leaves name resolution alone.
	ResolvConf string
}

// Action is one kind of change Apply makes to the machine.
type Action string

// The actions of Apply, in the order it performs them on a link.
const (
	ActionCreateVLAN      Action = "create-vlan"
	ActionSetMTU          Action = "set-mtu"
	ActionSetUp           Action = "set-up"
	ActionIgnoreRA        Action = "ignore-router-advertisements"
	ActionAddAddress      Action = "add-address"
	ActionRemoveAddress   Action = "remove-address"
	ActionRemoveRoute     Action = "remove-route"
	ActionReplaceRoute    Action = "replace-route"
	ActionRenewLease      Action = "renew-lease"
	ActionWriteResolvConf Action = "write-resolv-conf"
	ActionReplaceFirewall Action = "replace-firewall"
)

// Change is one change Apply made: on which role and link, what, and the
// value it set (an address, a route, an MTU, a path).
type Change struct {
	Role   Role   `json:"role,omitempty"`
	Link   string `json:"link,omitempty"`
	Action Action `json:"action"`
	Value  string `json:"value,omitempty"`
}

// String renders c as one line for people: "internal eth1: add-address
// 198.51.100.10/24".
func (c Change) String() string {
	s := string(c.Action)
	if c.Role != "" {
		s = string(c.Role) + " " + c.Link + ": " + s
	}
	if c.Value != "" {
		s += " " + c.Value
	}
	return s
}

// Route metrics by role. The kernel keys an IPv4 route by destination and
// metric, not by link, so a default route on each role needs its own
// metric; the external one wins because the portal is reached through it.
const (
	metricExternal = 100
	metricInternal = 200
)

func roleMetric(r Role) int {
	if r == RoleExternal {
		return metricExternal
	}
	return metricInternal
}

// linkState is what Apply found on a role's link before changing it.
type linkState struct {
	exists bool // false for a VLAN link still to be created
	mtu    int
	up     bool
	// slaac: the kernel takes addresses or routes from IPv6 router
	// advertisements on the link.
	slaac bool
	// addrs excludes IPv6 link-local addresses, which the kernel manages.
	addrs []netip.Prefix
	// routes are the static routes with the role's metric on the link.
	routes []route
}

// route is a route Apply manages; an invalid via means on-link.
type route struct {
	dst netip.Prefix
	via netip.Addr
}

func (r route) String() string {
	if r.via.IsValid() {
		return r.dst.String() + " via " + r.via.String()
	}
	return r.dst.String() + " on-link"
}

// step is one planned change with its parsed operand.
type step struct {
	Change
	mtu    int
	prefix netip.Prefix
	route  route
	// vlan and parent (an interface index) describe a VLAN link to create.
	vlan, parent int
}

// wantedRoutes lists the routes c asks for: the default route through the
// gateway, then Routes. c must have passed Validate.
func wantedRoutes(c Interface) []route {
	var rs []route
	if c.Gateway != "" {
		gw := netip.MustParseAddr(c.Gateway)
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		rs = append(rs, route{dst: def, via: gw})
	}
	for _, r := range c.Routes {
		x := route{dst: netip.MustParsePrefix(r.Destination)}
		if r.Via != "" {
			x.via = netip.MustParseAddr(r.Via)
		}
		rs = append(rs, x)
	}
	return rs
}

// planLink computes the steps that take the link named link from cur to
// what want asks for. It touches nothing, so a configuration that cannot be
// planned leaves the machine as it was. want must have passed Validate.
func planLink(role Role, want Interface, link string, cur linkState) []step {
	var steps []step
	add := func(s step) {
		s.Role, s.Link = role, link
		steps = append(steps, s)
	}

	if !cur.exists {
		add(step{Change: Change{Action: ActionCreateVLAN, Value: strconv.Itoa(want.VLAN)},
			vlan: want.VLAN})
	}
	if want.MTU != 0 && want.MTU != cur.mtu {
		add(step{Change: Change{Action: ActionSetMTU, Value: strconv.Itoa(want.MTU)}, mtu: want.MTU})
	}
	if !cur.up {
		add(step{Change: Change{Action: ActionSetUp}})
	}

	// With dhcp set, RunDHCP owns the link's addresses and routes.
	if want.DHCP {
		return steps
	}

	// With static addresses the configuration is the only source of
	// addresses and routes; an address a router advertised would be removed
	// by every Apply and come back with the next advertisement.
	if cur.slaac {
		add(step{Change: Change{Action: ActionIgnoreRA}})
	}

	var wantAddrs []netip.Prefix
	for _, s := range want.Addresses {
		wantAddrs = append(wantAddrs, netip.MustParsePrefix(s))
	}
	for _, p := range wantAddrs {
		if !slices.Contains(cur.addrs, p) {
			add(step{Change: Change{Action: ActionAddAddress, Value: p.String()}, prefix: p})
		}
	}
	for _, p := range cur.addrs {
		if !slices.Contains(wantAddrs, p) {
			add(step{Change: Change{Action: ActionRemoveAddress, Value: p.String()}, prefix: p})
		}
	}

	wantRoutes := wantedRoutes(want)
	for _, r := range cur.routes {
		if !slices.ContainsFunc(wantRoutes, func(w route) bool { return w.dst == r.dst }) {
			add(step{Change: Change{Action: ActionRemoveRoute, Value: r.String()}, route: r})
		}
	}
	for _, r := range wantRoutes {
		if !slices.Contains(cur.routes, r) {
			add(step{Change: Change{Action: ActionReplaceRoute, Value: r.String()}, route: r})
		}
	}
	return steps
}

// dhcpMarker precedes the name servers the internal DHCP server named.
const dhcpMarker = "# From the internal interface's DHCP server:\n"

// resolvConf renders the configured name servers of both roles, internal
// first, then those learned by DHCP, each once, in resolv.conf format.
func resolvConf(cfg Config, learned []netip.Addr) string {
	var b strings.Builder
	b.WriteString("# Written by qapi netconfig from the appliance's network configuration.\n")
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) {
		if !seen[a] {
			seen[a] = true
			b.WriteString("nameserver " + a.String() + "\n")
		}
	}
	for _, s := range append(slices.Clone(cfg.Internal.DNS), cfg.External.DNS...) {
		add(netip.MustParseAddr(s))
	}
	if !cfg.Internal.DHCP {
		return b.String()
	}
	var extra []netip.Addr
	for _, a := range learned {
		if !seen[a] && !slices.Contains(extra, a) {
			extra = append(extra, a)
		}
	}
	if len(extra) > 0 {
		b.WriteString(dhcpMarker)
		for _, a := range extra {
			add(a)
		}
	}
	return b.String()
}
