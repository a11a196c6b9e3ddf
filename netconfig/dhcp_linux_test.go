package netconfig

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestLeaseNext(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	l := Lease{Acquired: t0, Duration: 800 * time.Second, Renew: 400 * time.Second,
		Rebind: 700 * time.Second}
	cases := []struct {
		at   time.Duration
		act  leaseAction
		when time.Duration
	}{
		{0, leaseRenew, 400 * time.Second},
		{399 * time.Second, leaseRenew, 400 * time.Second},
		{400 * time.Second, leaseRenew, 400 * time.Second},
		{699 * time.Second, leaseRenew, 699 * time.Second},
		{700 * time.Second, leaseRebind, 700 * time.Second},
		{799 * time.Second, leaseRebind, 799 * time.Second},
		{800 * time.Second, leaseExpired, 800 * time.Second},
	}
	for _, tc := range cases {
		act, when := leaseNext(l, t0.Add(tc.at))
		if act != tc.act || !when.Equal(t0.Add(tc.when)) {
			t.Errorf("at %v: %v at +%v, want %v at +%v", tc.at, act, when.Sub(t0), tc.act,
				tc.when)
		}
	}
}

// startDnsmasq runs dnsmasq, a DHCP server nobody here wrote, on pint0 in
// the peer namespace until the test ends.
func startDnsmasq(t *testing.T, l *lab) {
	t.Helper()
	bin := testenv.NeedCommand(t, "dnsmasq")
	dir := t.TempDir()
	var cmd *exec.Cmd
	in(t, l.peer, func() {
		// Started from a thread inside the peer namespace, dnsmasq lives there.
		cmd = exec.Command(bin, "--keep-in-foreground", "--conf-file=/dev/null",
			"--port=0", "--interface=pint0", "--bind-interfaces", "--user=root",
			"--log-facility=-",
			"--pid-file="+filepath.Join(dir, "pid"),
			"--dhcp-leasefile="+filepath.Join(dir, "leases"),
			"--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,10m",
			"--dhcp-option=option:router,"+peerInt,
			"--dhcp-option=option:dns-server,198.51.100.53",
			"--dhcp-authoritative", "--no-ping")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start dnsmasq: %v", err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		// Its first DHCP log line says it serves the range.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "DHCP, IP range") {
				go func() {
					for sc.Scan() {
						t.Logf("dnsmasq: %s", sc.Text())
					}
				}()
				return
			}
		}
		t.Fatalf("dnsmasq exited before serving DHCP: %v", sc.Err())
	})
}

func dhcpConfig(l *lab) Config {
	cfg := labConfig(l)
	cfg.Internal = Interface{Name: "int0", DHCP: true, DNS: []string{"198.51.100.52"}}
	cfg.External.DNS = []string{"192.0.2.53"}
	return cfg
}

func inRange(p netip.Prefix) bool {
	lo, hi := netip.MustParseAddr("198.51.100.100"), netip.MustParseAddr("198.51.100.150")
	return p.Bits() == 24 && p.Addr().Compare(lo) >= 0 && p.Addr().Compare(hi) <= 0
}

func TestDHCPClientAgainstDnsmasq(t *testing.T) {
	l := newLab(t)
	cfg := dhcpConfig(l)
	startDnsmasq(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	in(t, l.app, func() {
		// The firewall is in place: offers must pass its DHCP rule.
		mustApply(t, cfg, Options{})

		c, err := newDHCPClient(cfg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.close()
		c.report = func(Change) {}

		l.waitLinks(t)
		start := time.Now()
		lease, err := c.acquire(ctx)
		t.Logf("acquired in %v", time.Since(start))
		if err != nil {
			t.Fatalf("acquire: %v", err)
		}
		t.Logf("lease from dnsmasq: %+v", lease)
		if !inRange(lease.Address) || lease.Gateway != netip.MustParseAddr(peerInt) ||
			!slices.Equal(lease.DNS, []netip.Addr{netip.MustParseAddr("198.51.100.53")}) ||
			lease.Duration != 10*time.Minute {
			t.Fatalf("lease %+v: want an address of the range, router %s, its DNS, 10m",
				lease, peerInt)
		}
		if err := c.install(lease); err != nil {
			t.Fatal(err)
		}

		// Renewing goes to the server by unicast from the leased address;
		// rebinding broadcasts. Both must keep the address.
		server := &net.UDPAddr{IP: lease.Server.AsSlice(), Port: 67}
		for _, to := range []*net.UDPAddr{server, broadcastTo} {
			renewed, err := c.renew(ctx, lease, to, 4*time.Second)
			if err != nil {
				t.Fatalf("renew via %v: %v", to, err)
			}
			if renewed.Address != lease.Address || !renewed.Acquired.After(lease.Acquired) {
				t.Errorf("renew via %v gave %+v, want %s again", to, renewed, lease.Address)
			}
		}

		// A lease near its end is rebound at once by broadcast, and the
		// address gets the new lease's lifetime.
		old := lease
		old.Duration, old.Renew, old.Rebind = 90*time.Second, 45*time.Second, 78*time.Second
		old.Acquired = time.Now().Add(-80 * time.Second)
		if err := c.install(old); err != nil {
			t.Fatal(err)
		}
		renewed := make(chan Change, 4)
		c.report = func(ch Change) { renewed <- ch }
		keepCtx, stopKeep := context.WithCancel(ctx)
		kept := make(chan struct{})
		go func() {
			defer close(kept)
			c.keep(keepCtx, old)
		}()
		select {
		case ch := <-renewed:
			want := "internal int0: renew-lease " + lease.Address.String() + " for 10m0s"
			if ch.String() != want {
				t.Errorf("keep reported %q, want %q", ch, want)
			}
		case <-kept:
			t.Error("keep returned without renewing")
		case <-ctx.Done():
			t.Error("keep did not renew")
		}
		stopKeep()
		<-kept
		link, _ := netlink.LinkByName("int0")
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].ValidLft <= 90 {
			t.Errorf("after the rebind int0 has %+v, want the address valid for 10 min", addrs)
		}

		// The firewall let every offer and acknowledgement through.
		if cs := counters(t); cs[CounterDropInternal].Packets != 0 {
			t.Errorf("the firewall dropped %d packets (%d bytes) on int0 during DHCP, "+
				"want none", cs[CounterDropInternal].Packets, cs[CounterDropInternal].Bytes)
		}

		// An authoritative server refuses a client that asks, as after a
		// reboot, for an address of another network.
		req := c.message(dhcpRequest, newXID(), netip.Addr{}, map[byte][]byte{
			optRequestedIP: {203, 0, 113, 5}})
		if _, err := c.exchange(ctx, req, broadcastTo, 4*time.Second, dhcpAck); err != errNak {
			t.Errorf("request for 203.0.113.5: %v, want a NAK", err)
		}
	})
}

func TestRunDHCPInstallsTheLease(t *testing.T) {
	l := newLab(t)
	cfg := dhcpConfig(l)
	startDnsmasq(t, l)
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	opts := Options{ResolvConf: resolv}
	in(t, l.app, func() { mustApply(t, cfg, opts) })
	l.waitLinks(t)

	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Change, 16)
	done := make(chan error, 1)
	go func() {
		err := enter(l.app, func() {
			done <- RunDHCP(ctx, cfg, opts, func(c Change) { changes <- c })
		})
		if err != nil {
			done <- err
		}
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunDHCP: %v", err)
		}
	}()

	var got []string
	limit := time.After(30 * time.Second) // a hang guard, not a speed check
	for len(got) < 3 {
		select {
		case c := <-changes:
			got = append(got, c.String())
		case err := <-done:
			t.Fatalf("RunDHCP returned early: %v", err)
		case <-limit:
			t.Fatalf("RunDHCP made only %v", got)
		}
	}
	t.Logf("RunDHCP changed %v", got)
	if !strings.HasPrefix(got[0], "internal int0: add-address 198.51.100.1") ||
		got[1] != "internal int0: replace-route 0.0.0.0/0 via "+peerInt ||
		got[2] != "write-resolv-conf "+resolv {
		t.Errorf("changes %q, want the address, the default route, resolv.conf", got)
	}

	in(t, l.app, func() {
		link, _ := netlink.LinkByName("int0")
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 {
			t.Fatalf("int0 addresses %v, want the leased one", addrs)
		}
		a := addrs[0]
		p, _ := toPrefix(a.IPNet)
		if !inRange(p) || a.ValidLft <= 0 || a.ValidLft > 600 {
			t.Errorf("int0 address %s valid for %d s, want a leased one expiring "+
				"within the lease", a.IPNet, a.ValidLft)
		}
		routes, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{
			LinkIndex: link.Attrs().Index, Protocol: unix.RTPROT_DHCP},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
		if len(routes) != 1 || routes[0].Gw.String() != peerInt ||
			routes[0].Priority != metricInternal {
			t.Errorf("DHCP routes %v, want default via %s metric %d", routes, peerInt,
				metricInternal)
		}

		// Apply leaves what DHCP made alone, resolv.conf's learned servers
		// included.
		if again := mustApply(t, cfg, opts); len(again) != 0 {
			t.Errorf("Apply after DHCP changed %v, want nothing", again)
		}
	})
	b, err := os.ReadFile(resolv)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.52", "192.0.2.53", "198.51.100.53"}
	if ns := nameservers(string(b)); !slices.Equal(ns, want) {
		t.Errorf("resolv.conf name servers %v, want %v", ns, want)
	}
}
