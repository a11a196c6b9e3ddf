package netconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Apply makes the machine's network match cfg and returns what it changed,
// in order; applying the same cfg again changes and returns nothing. It
// works in the network namespace of the calling OS thread.
//
// Apply validates cfg and finds both roles' links before it changes
// anything, so a bad configuration or a missing interface leaves the
// machine untouched. It then replaces the firewall when its rules differ,
// before any address comes up, changes the links, and writes resolv.conf.
// A failure on the way returns the changes made so far with the error;
// applying again completes the rest. Changes take effect at once: no reboot
// and no restart of a service.
func Apply(ctx context.Context, cfg Config, opts Options) ([]Change, error) {
	if err := Validate(cfg); err != nil {
		return nil, fmt.Errorf("netconfig: configuration refused, nothing changed: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netconfig: open rtnetlink: %w", err)
	}
	defer h.Close()

	in, err := resolve(h, RoleInternal, cfg.Internal)
	if err != nil {
		return nil, err
	}
	ex, err := resolve(h, RoleExternal, cfg.External)
	if err != nil {
		return nil, err
	}
	if in.name == ex.name {
		return nil, fmt.Errorf("netconfig: internal and external both resolve to link %s; "+
			"each role needs its own interface, nothing changed", in.name)
	}

	var steps []step
	for _, r := range []resolved{in, ex} {
		s, err := r.plan(h)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s...)
	}

	// The firewall goes first, so that no address is up without it.
	var done []Change
	changed, err := applyFirewall(cfg, in.name, ex.name)
	if err != nil {
		return nil, err
	}
	if changed {
		done = append(done, Change{Action: ActionReplaceFirewall, Value: "inet " + TableName})
	}

	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return done, fmt.Errorf("netconfig: stopped before %s: %w", s.Change, err)
		}
		if err := execute(h, s); err != nil {
			return done, fmt.Errorf("netconfig: %s: %w", s.Change, err)
		}
		done = append(done, s.Change)
	}

	if opts.ResolvConf != "" {
		// Name servers a DHCP client learned stay until it says otherwise.
		learned := learnedDNS(opts.ResolvConf)
		changed, err := writeIfChanged(opts.ResolvConf, []byte(resolvConf(cfg, learned)))
		if err != nil {
			return done, fmt.Errorf("netconfig: write %s: %w", opts.ResolvConf, err)
		}
		if changed {
			done = append(done, Change{Action: ActionWriteResolvConf, Value: opts.ResolvConf})
		}
	}

	return done, nil
}

// resolved is a role's link as found on the machine.
type resolved struct {
	role Role
	want Interface
	// parent is the physical link; with no VLAN it is the role's link.
	parent netlink.Link
	// link is the role's link; nil for a VLAN link still to be created.
	link netlink.Link
	// name is the role's link name, existing or to be created.
	name string
}

// findParent finds the link c names by name or by MAC.
func findParent(h *netlink.Handle, role Role, c Interface) (netlink.Link, error) {
	if c.Name != "" {
		l, err := h.LinkByName(c.Name)
		if err != nil {
			return nil, fmt.Errorf("netconfig: %s interface %q not found, nothing changed: %w",
				role, c.Name, err)
		}
		return l, nil
	}
	mac, _ := net.ParseMAC(c.MAC)
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netconfig: list links: %w", err)
	}
	var found []netlink.Link
	for _, l := range links {
		// A VLAN link shares its parent's MAC; the parent is the one meant.
		if _, isVLAN := l.(*netlink.Vlan); isVLAN {
			continue
		}
		if bytes.Equal(l.Attrs().HardwareAddr, mac) {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("netconfig: no %s interface has MAC %s, nothing changed",
			role, mac)
	case 1:
		return found[0], nil
	}
	// A bridge, for one, takes the MAC of a port.
	return nil, fmt.Errorf("netconfig: %s interfaces %s and %s both have MAC %s; name the "+
		"interface instead, nothing changed", role, found[0].Attrs().Name,
		found[1].Attrs().Name, mac)
}

func resolve(h *netlink.Handle, role Role, c Interface) (resolved, error) {
	parent, err := findParent(h, role, c)
	if err != nil {
		return resolved{}, err
	}
	r := resolved{role: role, want: c, parent: parent, link: parent, name: parent.Attrs().Name}
	if c.VLAN == 0 {
		return r, nil
	}

	r.name = vlanName(r.name, c.VLAN)
	if msg := checkIfname(r.name); msg != "" {
		return resolved{}, fmt.Errorf("netconfig: %s VLAN link name %q %s; "+
			"rename the parent interface, nothing changed", role, r.name, msg)
	}
	l, err := h.LinkByName(r.name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		r.link = nil
		return r, nil
	case err != nil:
		return resolved{}, fmt.Errorf("netconfig: look up %s: %w", r.name, err)
	}
	v, ok := l.(*netlink.Vlan)
	if !ok || v.VlanId != c.VLAN || v.ParentIndex != parent.Attrs().Index {
		return resolved{}, fmt.Errorf("netconfig: %s link %s exists but is not VLAN %d on %s; "+
			"remove it, nothing changed", role, r.name, c.VLAN, parent.Attrs().Name)
	}
	r.link = l
	return r, nil
}

func vlanName(parent string, id int) string { return parent + "." + strconv.Itoa(id) }

// plan reads the role's link state and plans the steps to the wanted one.
func (r resolved) plan(h *netlink.Handle) ([]step, error) {
	var steps []step
	if r.want.VLAN != 0 && r.parent.Attrs().Flags&net.FlagUp == 0 {
		// A VLAN link carries nothing while its parent is down.
		steps = append(steps, step{Change: Change{
			Role: r.role, Link: r.parent.Attrs().Name, Action: ActionSetUp}})
	}
	if r.link == nil {
		// A new link takes router advertisements, as every link does.
		planned := planLink(r.role, r.want, r.name, linkState{slaac: true})
		for i := range planned {
			planned[i].parent = r.parent.Attrs().Index
		}
		return append(steps, planned...), nil
	}

	cur := linkState{
		exists: true,
		mtu:    r.link.Attrs().MTU,
		up:     r.link.Attrs().Flags&net.FlagUp != 0,
		slaac:  takesRA(r.name),
	}
	addrs, err := h.AddrList(r.link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("netconfig: list addresses of %s: %w", r.name, err)
	}
	for _, a := range addrs {
		p, ok := toPrefix(a.IPNet)
		if !ok || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		cur.addrs = append(cur.addrs, p)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, routeFilter(r.role, r.link),
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, fmt.Errorf("netconfig: list routes of %s: %w", r.name, err)
	}
	for _, rt := range routes {
		if rt.Priority != roleMetric(r.role) || len(rt.MultiPath) > 0 {
			continue
		}
		dst, ok := toPrefix(rt.Dst)
		if !ok {
			continue
		}
		x := route{dst: dst}
		if gw, ok := netip.AddrFromSlice(rt.Gw); ok {
			x.via = gw.Unmap()
		}
		cur.routes = append(cur.routes, x)
	}
	return append(steps, planLink(r.role, r.want, r.name, cur)...), nil
}

// routeFilter selects the routes Apply manages on link: static routes of
// the main table. Apply marks its routes with the static protocol so that it
// never removes a route the kernel or another tool made.
func routeFilter(role Role, link netlink.Link) *netlink.Route {
	return &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_STATIC,
		Priority:  roleMetric(role),
	}
}

func toPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

func toIPNet(p netip.Prefix) *net.IPNet {
	bits := 128
	if p.Addr().Is4() {
		bits = 32
	}
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

func execute(h *netlink.Handle, s step) error {
	if s.Action == ActionCreateVLAN {
		v := &netlink.Vlan{
			LinkAttrs:    netlink.LinkAttrs{Name: s.Link, ParentIndex: s.parent},
			VlanId:       s.vlan,
			VlanProtocol: netlink.VLAN_PROTOCOL_8021Q,
		}
		if err := h.LinkAdd(v); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return fmt.Errorf("the kernel has no 802.1Q VLAN support (8021q): %w", err)
			}
			return err
		}
		return nil
	}

	link, err := h.LinkByName(s.Link)
	if err != nil {
		return err
	}
	switch s.Action {
	case ActionSetMTU:
		return h.LinkSetMTU(link, s.mtu)
	case ActionSetUp:
		return h.LinkSetUp(link)
	case ActionIgnoreRA:
		for _, knob := range raKnobs {
			path := "/proc/sys/net/ipv6/conf/" + s.Link + "/" + knob
			if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	case ActionAddAddress:
		return h.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(s.prefix)})
	case ActionRemoveAddress:
		if s.prefix.Addr().Is4() {
			if err := promoteSecondaries(s.Link); err != nil {
				return err
			}
		}
		return h.AddrDel(link, &netlink.Addr{IPNet: toIPNet(s.prefix)})
	case ActionRemoveRoute, ActionReplaceRoute:
		rt := routeFilter(s.Role, link)
		rt.Dst = toIPNet(s.route.dst)
		rt.Scope = netlink.SCOPE_UNIVERSE
		if s.route.via.IsValid() {
			rt.Gw = s.route.via.AsSlice()
		} else {
			rt.Scope = netlink.SCOPE_LINK
		}
		if s.Action == ActionRemoveRoute {
			return h.RouteDel(rt)
		}
		return h.RouteReplace(rt)
	}
	return fmt.Errorf("unknown action %q", s.Action)
}

// raKnobs are the per-link IPv6 settings by which router advertisements
// add routes (accept_ra) and addresses (autoconf).
var raKnobs = []string{"accept_ra", "autoconf"}

// takesRA reports whether the kernel takes addresses or routes from router
// advertisements on link; false where the link has no IPv6.
func takesRA(link string) bool {
	for _, knob := range raKnobs {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + link + "/" + knob)
		if err == nil && strings.TrimSpace(string(b)) != "0" {
			return true
		}
	}
	return false
}

// promoteSecondaries makes the kernel keep the other IPv4 addresses of a
// subnet when its first (primary) address is removed; by default it removes
// them all, which would take a wanted address away with an unwanted one.
func promoteSecondaries(link string) error {
	path := "/proc/sys/net/ipv4/conf/" + link + "/promote_secondaries"
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("keep secondary addresses: %w", err)
	}
	return nil
}

// writeIfChanged replaces path with data, atomically, unless it holds data
// already. A symbolic link at path is followed, even to a file still to be
// made: gokrazy's read-only /etc/resolv.conf points into /tmp.
func writeIfChanged(path string, data []byte) (bool, error) {
	path, err := followLinks(path)
	if err != nil {
		return false, err
	}
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".resolv.conf.*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	return true, os.Rename(tmp.Name(), path)
}

// followLinks resolves symbolic links at the end of path, the last target
// not needing to exist.
func followLinks(path string) (string, error) {
	for range 16 {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many symbolic links", path)
}
