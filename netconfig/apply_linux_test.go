package netconfig

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// labConfig is the configuration the integration tests apply in a lab.
func labConfig(l *lab) Config {
	return Config{
		Internal: Interface{
			Name:      "int0",
			Addresses: []string{"198.51.100.1/24", "2001:db8:1::1/64"},
			Routes: []Route{
				{Destination: "203.0.113.0/24", Via: peerInt},
				{Destination: "2001:db8:5::/48", Via: peerInt6},
			},
			DNS: []string{"198.51.100.53"},
			MTU: 1400,
		},
		External: Interface{
			MAC:       l.extMAC.String(),
			Addresses: []string{"192.0.2.1/24"},
			Gateway:   "192.0.2.254",
			DNS:       []string{"192.0.2.53", "198.51.100.53"},
			MTU:       1450,
		},
		Firewall: Firewall{TLSPort: 5500, ClientPorts: []uint16{8080}, AdapterPort: 8081,
			ConsolePort: 4000},
	}
}

func mustApply(t testing.TB, cfg Config, opts Options) []string {
	t.Helper()
	changes, err := Apply(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Apply: %v (after %v)", err, changes)
	}
	var out []string
	for _, c := range changes {
		out = append(out, c.String())
	}
	return out
}

func TestApplyTwiceChangesOnce(t *testing.T) {
	l := newLab(t)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	opts := Options{ResolvConf: resolv}
	cfg := labConfig(l)

	in(t, l.app, func() {
		// An address no configuration asks for, which Apply must remove.
		stale, _ := netlink.ParseAddr("198.51.100.9/24")
		link, _ := netlink.LinkByName("int0")
		if err := netlink.AddrAdd(link, stale); err != nil {
			t.Fatal(err)
		}

		got := mustApply(t, cfg, opts)
		want := []string{
			"replace-firewall inet qapi",
			"internal int0: set-mtu 1400",
			"internal int0: set-up",
			"internal int0: ignore-router-advertisements",
			"internal int0: add-address 198.51.100.1/24",
			"internal int0: add-address 2001:db8:1::1/64",
			"internal int0: remove-address 198.51.100.9/24",
			"internal int0: replace-route 203.0.113.0/24 via 198.51.100.2",
			"internal int0: replace-route 2001:db8:5::/48 via 2001:db8:1::2",
			"external ext0: set-mtu 1450",
			"external ext0: set-up",
			"external ext0: ignore-router-advertisements",
			"external ext0: add-address 192.0.2.1/24",
			"external ext0: replace-route 0.0.0.0/0 via 192.0.2.254",
			"write-resolv-conf " + resolv,
		}
		if !slices.Equal(got, want) {
			t.Errorf("first Apply changed\n%s\nwant\n%s",
				strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		checkApplied(t, cfg)
		b, err := os.ReadFile(resolv)
		if err != nil {
			t.Fatal(err)
		}
		if ns := nameservers(string(b)); !slices.Equal(ns,
			[]string{"198.51.100.53", "192.0.2.53"}) {
			t.Errorf("resolv.conf name servers = %v, want internal's then external's, "+
				"each once", ns)
		}

		if got := mustApply(t, cfg, opts); len(got) != 0 {
			t.Errorf("second Apply of the same configuration changed %v, want nothing", got)
		}

		// A changed configuration changes only what differs.
		cfg.Internal.MTU = 1500
		cfg.Internal.Routes = nil
		cfg.External.Addresses = append(cfg.External.Addresses, "192.0.2.3/24")
		got = mustApply(t, cfg, opts)
		want = []string{
			"internal int0: set-mtu 1500",
			"internal int0: remove-route 203.0.113.0/24 via 198.51.100.2",
			"internal int0: remove-route 2001:db8:5::/48 via 2001:db8:1::2",
			"external ext0: add-address 192.0.2.3/24",
		}
		if !slices.Equal(got, want) {
			t.Errorf("Apply of a changed configuration changed %q, want %q", got, want)
		}
		checkApplied(t, cfg)
	})
}

// checkApplied reads the links back through netlink and compares them with
// cfg: MTU, up, addresses and the routes Apply manages.
func checkApplied(t *testing.T, cfg Config) {
	t.Helper()
	for _, r := range []struct {
		role Role
		name string
		c    Interface
	}{{RoleInternal, "int0", cfg.Internal}, {RoleExternal, "ext0", cfg.External}} {
		link, err := netlink.LinkByName(r.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := link.Attrs().MTU; got != r.c.MTU {
			t.Errorf("%s MTU = %d, want %d", r.name, got, r.c.MTU)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s is down, want up", r.name)
		}
		if takesRA(r.name) {
			t.Errorf("%s still takes addresses or routes from router advertisements", r.name)
		}

		addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range addrs {
			if !a.IP.IsLinkLocalUnicast() {
				got = append(got, a.IPNet.String())
			}
		}
		want := slices.Clone(r.c.Addresses)
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s addresses = %v, want %v", r.name, got, want)
		}

		routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{LinkIndex: link.Attrs().Index, Protocol: unix.RTPROT_STATIC},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		for _, rt := range routes {
			got = append(got, fmt.Sprintf("%s via %s metric %d", rt.Dst, rt.Gw, rt.Priority))
		}
		want = nil
		for _, w := range wantedRoutes(r.c) {
			want = append(want, fmt.Sprintf("%s via %s metric %d", w.dst, w.via,
				roleMetric(r.role)))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s static routes = %v, want %v", r.name, got, want)
		}
	}
}

// snapshot is what a refused configuration must leave as it was.
func snapshot(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		a := l.Attrs()
		fmt.Fprintf(&b, "link %d %s %s mtu %d flags %v\n", a.Index, a.Name, l.Type(), a.MTU,
			a.Flags)
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			fmt.Fprintf(&b, "  addr %s\n", ad.IPNet)
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		fmt.Fprintf(&b, "route %s\n", r)
	}
	nft, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := nft.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		fmt.Fprintf(&b, "nft table %d %s\n", tb.Family, tb.Name)
	}
	return b.String()
}

// dupMAC is the MAC two links of the refusal test share.
const dupMAC = "02:00:5e:00:53:42"

func TestRefusedConfigurationLeavesNamespaceUntouched(t *testing.T) {
	l := newLab(t)
	good := labConfig(l)

	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // in the error
	}{
		{"bad CIDR", func(c *Config) {
			c.External.Addresses = append(c.External.Addresses, "10.0.0.300/24")
		}, `external.addresses[1]: "10.0.0.300/24" is not a CIDR`},
		{"interface missing", func(c *Config) { c.Internal.Name = "nosuch0" },
			`internal interface "nosuch0" not found`},
		{"MAC of no interface", func(c *Config) { c.External.MAC = "02:00:5e:00:53:99" },
			"no external interface has MAC 02:00:5e:00:53:99"},
		{"both roles on one link", func(c *Config) { c.Internal.Name = "ext0" },
			"internal and external both resolve to link ext0"},
		{"MAC on two links", func(c *Config) { c.Internal.Name, c.Internal.MAC = "", dupMAC },
			"both have MAC " + dupMAC},
		{"VLAN name clash", func(c *Config) { c.Internal.Name, c.Internal.VLAN = "lo", 7 },
			""},
	}
	in(t, l.app, func() {
		// A VLAN link name taken by a link that is not that VLAN.
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lo.7"},
			PeerName: "lo7peer"}); err != nil {
			t.Fatal(err)
		}
		cases[len(cases)-1].want = "link lo.7 exists but is not VLAN 7 on lo"
		// Two links with one MAC, as a bridge and its port have.
		mac, _ := net.ParseMAC(dupMAC)
		if err := netlink.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "dup0", HardwareAddr: mac},
			PeerName:  "dup1", PeerHardwareAddr: mac}); err != nil {
			t.Fatal(err)
		}

		before := snapshot(t)
		for _, tc := range cases {
			cfg := labConfig(l)
			cfg.Internal.Addresses = slices.Clone(good.Internal.Addresses)
			cfg.External.Addresses = slices.Clone(good.External.Addresses)
			tc.mutate(&cfg)
			changes, err := Apply(context.Background(), cfg, Options{
				ResolvConf: filepath.Join(t.TempDir(), "resolv.conf")})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Apply error = %v, want one containing %q", tc.name, err, tc.want)
			}
			if len(changes) != 0 {
				t.Errorf("%s: Apply reported changes %v", tc.name, changes)
			}
			if after := snapshot(t); after != before {
				t.Errorf("%s: namespace changed\nbefore:\n%s\nafter:\n%s", tc.name, before, after)
			}
		}
	})
}

func TestVLAN(t *testing.T) {
	l := newLab(t)
	cfg := labConfig(l)
	cfg.External.VLAN = 100
	in(t, l.app, func() {
		changes, err := Apply(context.Background(), cfg, Options{})
		if err != nil && strings.Contains(err.Error(), "no 802.1Q VLAN support") {
			// The kernel loads 8021q by itself for a VLAN link. Only a kernel
			// built without it cannot, which no package fixes: that alone
			// skips in CI.
			if kernelConfig(t, "CONFIG_VLAN_8021Q") == "n" {
				t.Skipf("kernel is built without 802.1Q VLANs (CONFIG_VLAN_8021Q "+
					"is not set): %v", err)
			}
			testenv.Missing(t, fmt.Sprintf("load the 8021q module (modprobe 8021q): %v", err))
		}
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		create := Change{Role: RoleExternal, Link: "ext0.100", Action: ActionCreateVLAN,
			Value: "100"}
		if !slices.Contains(changes, create) {
			t.Errorf("changes %v lack %v", changes, create)
		}
		link, err := netlink.LinkByName("ext0.100")
		if err != nil {
			t.Fatalf("VLAN link: %v", err)
		}
		v, ok := link.(*netlink.Vlan)
		if !ok || v.VlanId != 100 {
			t.Fatalf("ext0.100 is %T %+v, want VLAN 100", link, link)
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "192.0.2.1/24" {
			t.Errorf("ext0.100 addresses %v, want 192.0.2.1/24", addrs)
		}
		if again := mustApply(t, cfg, Options{}); len(again) != 0 {
			t.Errorf("second Apply changed %v", again)
		}
	})
}

// kernelConfig returns the running kernel's setting of option from
// /proc/config.gz: "y", "m", "n" when it is not set, or "" when the kernel
// does not publish its configuration.
func kernelConfig(t testing.TB, option string) string {
	t.Helper()
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return ""
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("read /proc/config.gz: %v", err)
	}
	sc := bufio.NewScanner(z)
	for sc.Scan() {
		line := sc.Text()
		if line == "# "+option+" is not set" {
			return "n"
		}
		if v, ok := strings.CutPrefix(line, option+"="); ok {
			return v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /proc/config.gz: %v", err)
	}
	return "n"
}

// BenchmarkApplyUnchanged measures an Apply that finds nothing to change:
// what a periodic re-apply costs.
func BenchmarkApplyUnchanged(b *testing.B) {
	l := newLab(b)
	cfg := labConfig(l)
	in(b, l.app, func() {
		mustApply(b, cfg, Options{})
		for b.Loop() {
			if got := mustApply(b, cfg, Options{}); len(got) != 0 {
				b.Fatalf("changed %v", got)
			}
		}
	})
}

// BenchmarkFirewallReplace measures replacing the firewall table in one
// batch, alternating two configurations so that each call replaces it.
func BenchmarkFirewallReplace(b *testing.B) {
	l := newLab(b)
	cfg := labConfig(l)
	in(b, l.app, func() {
		for i := 0; b.Loop(); i++ {
			cfg.Firewall.ConsolePort = 4000 + uint16(i%2)
			changed, err := ApplyFirewall(cfg, "int0", "ext0")
			if err != nil || !changed {
				b.Fatalf("ApplyFirewall = %v, %v", changed, err)
			}
		}
	})
}
