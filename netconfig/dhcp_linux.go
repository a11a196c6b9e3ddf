package netconfig

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RunDHCP keeps a DHCP lease on the internal interface until ctx ends, for
// a configuration whose internal role has dhcp set; Apply must have brought
// the link up. It puts the leased address on the link with the lease's
// lifetime, so that the kernel drops it if the client stops renewing, makes
// the default route through the server's router (metric 200, below the
// external gateway's), and adds the server's name servers to the
// resolv.conf file in opts. It reports each change to report, renews at T1,
// rebinds at T2, and starts over when the lease ends or the server refuses
// it. It returns nil when ctx ends, leaving the address to expire, or an
// error when it cannot run at all. It works in the network namespace of the
// calling OS thread, where it opens its socket before it starts.
//
// TODO: no DHCPv6; a dhcp link gets IPv6 only from router advertisements.
func RunDHCP(ctx context.Context, cfg Config, opts Options, report func(Change)) error {
	if err := Validate(cfg); err != nil {
		return fmt.Errorf("netconfig: configuration refused, no DHCP: %w", err)
	}
	if !cfg.Internal.DHCP {
		return errors.New("netconfig: the internal interface is configured without dhcp")
	}
	c, err := newDHCPClient(cfg, opts)
	if err != nil {
		return err
	}
	defer c.close()
	c.report = report

	for ctx.Err() == nil {
		if err := c.waitCarrier(ctx); err != nil {
			return err
		}
		lease, err := c.acquire(ctx)
		if err != nil {
			continue // only ctx ends acquire with an error
		}
		if err := c.install(lease); err != nil {
			return err
		}
		c.keep(ctx, lease)
		if ctx.Err() == nil {
			// The lease ended or was refused: its address must go.
			c.uninstall(lease)
		}
	}
	return nil
}

// dhcpClient is the DHCP client of one link.
type dhcpClient struct {
	cfg    Config
	opts   Options
	h      *netlink.Handle
	link   netlink.Link
	conn   net.PacketConn
	report func(Change)
}

func newDHCPClient(cfg Config, opts Options) (*dhcpClient, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netconfig: open rtnetlink: %w", err)
	}
	r, err := resolve(h, RoleInternal, cfg.Internal)
	if err == nil && r.link == nil {
		err = fmt.Errorf("netconfig: VLAN link %s does not exist yet: apply the "+
			"configuration first", r.name)
	}
	if err != nil {
		h.Close()
		return nil, err
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			// Bound to the link, the socket sends and hears broadcasts
			// there before the link has any address.
			serr = errors.Join(
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1),
				unix.BindToDevice(int(fd), r.name))
		})
		return errors.Join(err, serr)
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netconfig: open the DHCP client port 68 on %s: %w", r.name, err)
	}
	return &dhcpClient{cfg: cfg, opts: opts, h: h, link: r.link, conn: conn}, nil
}

// waitCarrier returns when the link is up with a carrier, or ctx ends: a
// message sent before that is lost, and the next try is seconds away.
func (c *dhcpClient) waitCarrier(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true})
	if err != nil {
		return fmt.Errorf("netconfig: subscribe to link notifications: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("netconfig: link notifications stopped")
			}
			if u.Attrs().Index == c.link.Attrs().Index && isUp(u.Attrs()) {
				return nil
			}
		}
	}
}

func (c *dhcpClient) close() {
	c.conn.Close()
	c.h.Close()
}

func (c *dhcpClient) name() string { return c.link.Attrs().Name }

// retryWaits are the waits for an answer before a message is sent again:
// RFC 2131, 4.1 asks for about 4 s, doubling up to 64 s.
var retryWaits = []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second,
	32 * time.Second, 64 * time.Second}

// acquire runs discover, offer, request, acknowledge until it holds a lease
// or ctx ends.
func (c *dhcpClient) acquire(ctx context.Context) (Lease, error) {
	for attempt := 0; ; attempt++ {
		wait := retryWaits[min(attempt, len(retryWaits)-1)]
		xid := newXID()
		offer, err := c.exchange(ctx, c.message(dhcpDiscover, xid, netip.Addr{}, nil),
			broadcastTo, wait, dhcpOffer)
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
		if err != nil {
			continue
		}
		server := offer.addr(optServerID)
		req := c.message(dhcpRequest, xid, netip.Addr{}, map[byte][]byte{
			optRequestedIP: offer.yiaddr.AsSlice(),
			optServerID:    server.AsSlice(),
		})
		ack, err := c.exchange(ctx, req, broadcastTo, wait, dhcpAck)
		if ctx.Err() != nil {
			return Lease{}, ctx.Err()
		}
		if err != nil {
			continue
		}
		if l, err := ack.lease(time.Now()); err == nil {
			return l, nil
		}
		// A server that grants unusable leases is not asked again at once.
		pause(ctx, wait)
	}
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

var broadcastTo = &net.UDPAddr{IP: net.IPv4bcast, Port: 67}

// renew asks for the lease to be extended: of its server when to is the
// server, of any server when to is broadcastTo (rebinding).
func (c *dhcpClient) renew(ctx context.Context, l Lease, to *net.UDPAddr,
	wait time.Duration) (Lease, error) {
	req := c.message(dhcpRequest, newXID(), l.Address.Addr(), nil)
	ack, err := c.exchange(ctx, req, to, wait, dhcpAck)
	if err != nil {
		return Lease{}, err
	}
	return ack.lease(time.Now())
}

var errNak = errors.New("the DHCP server refused the address (NAK)")

// exchange sends req to dst and waits up to wait for a reply of type want
// to it; a NAK ends the wait with errNak.
func (c *dhcpClient) exchange(ctx context.Context, req *dhcpMessage, dst *net.UDPAddr,
	wait time.Duration, want byte) (*dhcpMessage, error) {
	deadline := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if _, err := c.conn.WriteTo(req.marshal(), dst); err != nil {
		// The link may be down: wait as for a lost message, not spin.
		pause(ctx, time.Until(deadline))
		return nil, fmt.Errorf("send DHCP message: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetReadDeadline(time.Now()) })
	defer stop()
	c.conn.SetReadDeadline(deadline)

	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil, fmt.Errorf("wait for DHCP reply: %w", err)
		}
		m, err := parseDHCP(buf[:n])
		if err != nil || m.op != 2 || m.xid != req.xid ||
			!slices.Equal(m.chaddr, req.chaddr) {
			continue // not an answer to us
		}
		if !m.addr(optServerID).IsValid() {
			continue // RFC 2131, 4.3.1: every server reply names its server
		}
		switch m.msgType() {
		case want:
			return m, nil
		case dhcpNak:
			return nil, errNak
		}
	}
}

// message builds a client message of type typ; ciaddr is set when renewing.
func (c *dhcpClient) message(typ byte, xid uint32, ciaddr netip.Addr,
	extra map[byte][]byte) *dhcpMessage {
	m := &dhcpMessage{
		op: 1, xid: xid, ciaddr: ciaddr, chaddr: c.link.Attrs().HardwareAddr,
		// Without an address the client can only hear a broadcast reply.
		broadcast: !ciaddr.IsValid(),
		options: map[byte][]byte{
			optMessageType: {typ},
			optParamList: {optSubnetMask, optRouter, optDNS, optLeaseTime, optRenewalT1,
				optRebindT2},
		},
	}
	for k, v := range extra {
		m.options[k] = v
	}
	return m
}

func newXID() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// keep renews l until it ends, is refused, or ctx ends.
func (c *dhcpClient) keep(ctx context.Context, l Lease) {
	for {
		now := time.Now()
		act, at := leaseNext(l, now)
		if act == leaseExpired {
			return
		}
		timer := time.NewTimer(at.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}

		to := &net.UDPAddr{IP: l.Server.AsSlice(), Port: 67}
		if act == leaseRebind {
			to = broadcastTo
		}
		// Ask again halfway to the end of this phase (RFC 2131, 4.4.5).
		end := l.Acquired.Add(l.Rebind)
		if act == leaseRebind {
			end = l.Acquired.Add(l.Duration)
		}
		wait := max(time.Until(end)/2, min(retryWaits[0], time.Until(end)), time.Second)
		renewed, err := c.renew(ctx, l, to, wait)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errNak):
			return
		case err != nil:
			continue
		}
		if renewed.Address != l.Address {
			// The server moved the client: the old address must go first.
			c.uninstall(l)
		}
		if err := c.install(renewed); err != nil {
			return
		}
		c.changed(ActionRenewLease, renewed.Address.String()+" for "+renewed.Duration.String())
		l = renewed
	}
}

// leaseAction is what a lease asks of the client next.
type leaseAction int

const (
	leaseRenew   leaseAction = iota // ask the server that granted it
	leaseRebind                     // ask any server
	leaseExpired                    // stop using the address
)

// leaseNext says what to do next with l at now, and when.
func leaseNext(l Lease, now time.Time) (leaseAction, time.Time) {
	switch {
	case now.Before(l.Acquired.Add(l.Renew)):
		return leaseRenew, l.Acquired.Add(l.Renew)
	case now.Before(l.Acquired.Add(l.Rebind)):
		return leaseRenew, now
	case now.Before(l.Acquired.Add(l.Duration)):
		return leaseRebind, now
	}
	return leaseExpired, now
}

// install puts the lease on the link: address with its lifetime, default
// route, name servers. It reports what it changed.
func (c *dhcpClient) install(l Lease) error {
	life := int(l.Duration / time.Second)
	had, err := c.h.AddrList(c.link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("netconfig: list addresses of %s: %w", c.name(), err)
	}
	addr := &netlink.Addr{IPNet: toIPNet(l.Address), ValidLft: life, PreferedLft: life}
	if err := c.h.AddrReplace(c.link, addr); err != nil {
		return fmt.Errorf("netconfig: put leased address %s on %s: %w", l.Address, c.name(),
			err)
	}
	if !slices.ContainsFunc(had, func(a netlink.Addr) bool {
		p, _ := toPrefix(a.IPNet)
		return p == l.Address
	}) {
		c.changed(ActionAddAddress, l.Address.String())
	}

	if l.Gateway.IsValid() {
		rt := c.defaultRoute(l.Gateway)
		cur, err := c.h.RouteListFiltered(netlink.FAMILY_V4, rt,
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL|
				netlink.RT_FILTER_GW)
		if err != nil {
			return fmt.Errorf("netconfig: list routes of %s: %w", c.name(), err)
		}
		if err := c.h.RouteReplace(rt); err != nil {
			return fmt.Errorf("netconfig: default route via %s on %s: %w", l.Gateway,
				c.name(), err)
		}
		if len(cur) == 0 {
			c.changed(ActionReplaceRoute, route{dst: rtDefault4, via: l.Gateway}.String())
		}
	}

	if c.opts.ResolvConf != "" {
		changed, err := writeIfChanged(c.opts.ResolvConf, []byte(resolvConf(c.cfg, l.DNS)))
		if err != nil {
			return fmt.Errorf("netconfig: write %s: %w", c.opts.ResolvConf, err)
		}
		if changed {
			c.report(Change{Action: ActionWriteResolvConf, Value: c.opts.ResolvConf})
		}
	}
	return nil
}

var rtDefault4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

func (c *dhcpClient) defaultRoute(gw netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: c.link.Attrs().Index,
		Dst:       toIPNet(rtDefault4),
		Gw:        gw.AsSlice(),
		Table:     unix.RT_TABLE_MAIN,
		Protocol:  unix.RTPROT_DHCP,
		Priority:  metricInternal,
	}
}

// uninstall takes an ended lease's address and route away.
func (c *dhcpClient) uninstall(l Lease) {
	if l.Gateway.IsValid() && c.h.RouteDel(c.defaultRoute(l.Gateway)) == nil {
		c.changed(ActionRemoveRoute, route{dst: rtDefault4, via: l.Gateway}.String())
	}
	if c.h.AddrDel(c.link, &netlink.Addr{IPNet: toIPNet(l.Address)}) == nil {
		c.changed(ActionRemoveAddress, l.Address.String())
	}
	if c.opts.ResolvConf != "" {
		if ok, _ := writeIfChanged(c.opts.ResolvConf, []byte(resolvConf(c.cfg, nil))); ok {
			c.report(Change{Action: ActionWriteResolvConf, Value: c.opts.ResolvConf})
		}
	}
}

func (c *dhcpClient) changed(a Action, value string) {
	c.report(Change{Role: RoleInternal, Link: c.name(), Action: a, Value: value})
}

// learnedDNS reads back the name servers a DHCP client wrote to the
// resolv.conf at path, so that Apply keeps them when it rewrites the file.
func learnedDNS(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	_, learned, ok := strings.Cut(string(b), dhcpMarker)
	if !ok {
		return nil
	}
	var out []netip.Addr
	for _, line := range strings.Split(learned, "\n") {
		s, ok := strings.CutPrefix(line, "nameserver ")
		if !ok {
			continue
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			out = append(out, a)
		}
	}
	return out
}
