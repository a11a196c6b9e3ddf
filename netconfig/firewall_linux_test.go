package netconfig

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// blockedWait is how long a dial to a dropped port waits for an answer
// before the test calls it dropped. A dropped SYN gets no answer at all; an
// allowed one is answered at once on a veth.
const blockedWait = 1500 * time.Millisecond

// listen opens TCP listeners on every address of the current namespace,
// accepting and closing connections until the test ends.
func listen(t *testing.T, ports ...uint16) {
	t.Helper()
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(p)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

type dialCase struct {
	addr    string
	allowed bool
}

// dialAll dials every case from the peer namespace at once and checks that
// the allowed ones connect and the others are dropped, not refused.
func dialAll(t *testing.T, l *lab, cases []dialCase) {
	t.Helper()
	var wg sync.WaitGroup
	for _, dc := range cases {
		wg.Go(func() {
			err := enter(l.peer, func() {
				c, err := net.DialTimeout("tcp", dc.addr, blockedWait)
				if err == nil {
					c.Close()
				}
				switch {
				case dc.allowed && err != nil:
					t.Errorf("dial %s: %v, want a connection", dc.addr, err)
				case !dc.allowed && err == nil:
					t.Errorf("dial %s connected, want it dropped", dc.addr)
				case !dc.allowed && !isTimeout(err):
					t.Errorf("dial %s: %v, want no answer (dropped)", dc.addr, err)
				}
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func counters(t *testing.T) map[string]DropCounter {
	t.Helper()
	cs, err := Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	m := map[string]DropCounter{}
	for _, c := range cs {
		m[c.Name] = c
	}
	return m
}

func TestFirewallAllowsOnlyTheRolesPorts(t *testing.T) {
	l := newLab(t)
	cfg := labConfig(l)
	other := &nftables.Table{Name: "other", Family: nftables.TableFamilyINet}

	in(t, l.app, func() {
		// A table of someone else's, which applying must leave alone.
		c, err := nftables.New()
		if err != nil {
			t.Fatal(err)
		}
		c.AddTable(other)
		c.AddChain(&nftables.Chain{Name: "keep", Table: other})
		if err := c.Flush(); err != nil {
			t.Fatalf("nftables is not usable in this kernel: %v", err)
		}

		mustApply(t, cfg, Options{})
		listen(t, 5500, 8080, 8081, 4000, 9999)
	})

	var before map[string]DropCounter
	in(t, l.app, func() { before = counters(t) })
	for _, name := range []string{CounterDropInternal, CounterDropExternal, CounterDropOther} {
		if _, ok := before[name]; !ok {
			t.Fatalf("counter %s missing from %v", name, before)
		}
	}

	dialAll(t, l, []dialCase{
		{"192.0.2.1:5500", true},     // security-server TLS, external
		{"192.0.2.1:8080", false},    // client proxy, not on external
		{"192.0.2.1:4000", false},    // console, not on external
		{"198.51.100.1:8080", true},  // client proxy, internal
		{"198.51.100.1:8081", true},  // adapter, internal
		{"198.51.100.1:4000", true},  // console, internal
		{"198.51.100.1:5500", false}, // TLS port is the external side's only
		{"198.51.100.1:9999", false}, // nothing configured
		// Over IPv6 the client proxy is reached only if the firewall lets
		// neighbour discovery through.
		{"[2001:db8:1::1]:8080", true},
		{"[2001:db8:1::1]:9999", false},
	})

	var after map[string]DropCounter
	in(t, l.app, func() { after = counters(t) })
	for _, name := range []string{CounterDropInternal, CounterDropExternal} {
		if after[name].Packets <= before[name].Packets {
			t.Errorf("counter %s: %d packets before the blocked dials, %d after; want more",
				name, before[name].Packets, after[name].Packets)
		}
	}
	t.Logf("drop counters after the blocked dials: %+v", after)

	// A new configuration replaces our table and only it.
	cfg.Firewall.ConsolePort = 4001
	in(t, l.app, func() {
		listen(t, 4001)
		got := mustApply(t, cfg, Options{})
		if !slices.Equal(got, []string{"replace-firewall inet qapi"}) {
			t.Errorf("Apply with a new console port changed %v, want the firewall only", got)
		}
		c, _ := nftables.New()
		if _, err := c.ListChain(other, "keep"); err != nil {
			t.Errorf("the other table's chain is gone after two applies: %v", err)
		}
	})
	dialAll(t, l, []dialCase{
		{"198.51.100.1:4001", true},
		{"198.51.100.1:4000", false},
	})
}

// echoWait is how long echoes waits for replies after its last request.
// A full test run with QEMU beside it once left the single IPv6 echo
// unanswered after a one-second wait (not seen again in some 90 runs, alone
// or under CPU load). A first request waits for neighbour discovery, whose
// solicitations the kernel repeats once a second, so the wait leaves room
// for two more of them.
const echoWait = 3 * time.Second

// echoes sends n ICMP echo requests at once from the peer namespace to addr
// and returns how many were answered within echoWait of the last: all n
// end the wait early.
func echoes(t *testing.T, l *lab, addr string, n int) int {
	t.Helper()
	dst := netip.MustParseAddr(addr)
	network, proto := "ip4:icmp", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	replies := 0
	in(t, l.peer, func() {
		conn, err := icmp.ListenPacket(network, "")
		if err != nil {
			t.Fatalf("raw ICMP socket: %v", err)
		}
		defer conn.Close()
		id := os.Getpid() & 0xffff
		for seq := range n {
			msg := icmp.Message{Type: reqType, Body: &icmp.Echo{
				ID: id, Seq: seq, Data: []byte("qapi netconfig test")}}
			b, _ := msg.Marshal(nil) // the kernel sums ICMPv6 itself
			if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				t.Fatalf("send echo request: %v", err)
			}
		}
		conn.SetReadDeadline(time.Now().Add(echoWait))
		buf := make([]byte, 1500)
		for {
			k, from, err := conn.ReadFrom(buf)
			if err != nil {
				return // the deadline: no more replies
			}
			m, err := icmp.ParseMessage(proto, buf[:k])
			if err != nil || m.Type != replyType || from.String() != addr {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				if replies++; replies == n {
					return
				}
			}
		}
	})
	return replies
}

func TestFirewallAnswersPingAtALimitedRate(t *testing.T) {
	l := newLab(t)
	in(t, l.app, func() { mustApply(t, labConfig(l), Options{}) })
	l.waitLinks(t)

	for _, addr := range []string{"192.0.2.1", "2001:db8:1::1"} {
		if got := echoes(t, l, addr, 1); got != 1 {
			t.Errorf("one echo request to %s: %d replies, want 1", addr, got)
		}
	}

	// A flood meets the limit: the burst, then 10 a second. Sending takes
	// milliseconds, so far fewer than the 200 are answered.
	const flood = 200
	got := echoes(t, l, "198.51.100.1", flood)
	t.Logf("%d echo requests sent at once: %d answered (burst %d, then %d/s)", flood, got,
		echoBurst, echoPerSecond)
	if got == 0 || got > flood/2 {
		t.Errorf("%d of %d echo requests answered, want the limit's %d or a few more", got,
			flood, echoBurst)
	}
}

func TestFingerprintFollowsTheRules(t *testing.T) {
	cfg := validConfig()
	base := fingerprint(cfg, "int0", "ext0")
	if again := fingerprint(validConfig(), "int0", "ext0"); again != base {
		t.Fatalf("fingerprint of the same configuration differs: %q, %q", base, again)
	}
	changed := map[string]string{}
	c := validConfig()
	c.Firewall.ClientPorts = []uint16{80}
	changed["client ports"] = fingerprint(c, "int0", "ext0")
	c = validConfig()
	c.Internal.DHCP = true
	changed["DHCP"] = fingerprint(c, "int0", "ext0")
	changed["external link"] = fingerprint(cfg, "int0", "ext0.7")
	// An address is not in the rules, so it must not force a replacement.
	c = validConfig()
	c.External.Addresses = []string{"192.0.2.99/24"}
	if fp := fingerprint(c, "int0", "ext0"); fp != base {
		t.Errorf("an address change altered the fingerprint")
	}
	for what, fp := range changed {
		if fp == base {
			t.Errorf("changing the %s kept the fingerprint %q", what, fp)
		}
	}
}

// TestFailedReplacementKeepsTheOldTable shows the replacement is one
// transaction: a batch that deletes our table and fails at its last rule
// leaves the table, its rules and its counters as they were.
func TestFailedReplacementKeepsTheOldTable(t *testing.T) {
	l := newLab(t)
	cfg := labConfig(l)
	in(t, l.app, func() {
		mustApply(t, cfg, Options{})
		listen(t, 5500, 5501, 9999)
	})
	dialAll(t, l, []dialCase{{"198.51.100.1:9999", false}})

	in(t, l.app, func() {
		before := counters(t)
		c, err := nftables.New(nftables.AsLasting())
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseLasting()
		markBefore, err := currentMark(c)
		if err != nil || markBefore == "" {
			t.Fatalf("mark of the applied table: %q, %v", markBefore, err)
		}

		other := cfg
		other.Firewall.TLSPort = 5501
		rules := inputRules(other.Firewall, "int0", "ext0", false)
		// The kernel refuses a rule that names a counter nobody made.
		rules = append(rules, countDrop("no_such_counter"))
		queueReplace(c, rules, fingerprint(other, "int0", "ext0"))
		if err := c.Flush(); err == nil {
			t.Fatal("the kernel accepted a rule naming a missing counter")
		}

		if mark, err := currentMark(c); err != nil || mark != markBefore {
			t.Errorf("after the failed batch the table's mark is %q (%v), want %q", mark, err,
				markBefore)
		}
		after := counters(t)
		if after[CounterDropInternal].Packets < before[CounterDropInternal].Packets ||
			before[CounterDropInternal].Packets == 0 {
			t.Errorf("drop_internal %d before the failed batch, %d after; want kept",
				before[CounterDropInternal].Packets, after[CounterDropInternal].Packets)
		}
	})
	// The old rules still hold.
	dialAll(t, l, []dialCase{{"192.0.2.1:5500", true}, {"192.0.2.1:5501", false}})
}
