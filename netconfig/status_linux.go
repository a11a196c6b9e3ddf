package netconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/ethtool"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Status reports the state of both roles' links, internal first, each with
// its Warning filled in by Assess. A link that is missing is reported down
// with a warning, not as an error: the monitoring station must show it. It
// works in the network namespace of the calling OS thread.
func Status(cfg Config) ([]LinkStatus, error) {
	p, err := newProber()
	if err != nil {
		return nil, err
	}
	defer p.close()
	return []LinkStatus{p.status(RoleInternal, cfg.Internal),
		p.status(RoleExternal, cfg.External)}, nil
}

// Watch reports changes of the roles' links to fn until ctx ends: first the
// state of each role, then an event whenever a link goes up or down or its
// speed or duplex changes. It subscribes to the kernel's link notifications;
// it does not poll. fn runs on Watch's goroutine and should return quickly.
// Watch returns nil when ctx ends, or an error when the subscription fails.
// Its sockets are opened in the network namespace of the calling OS thread
// before it starts waiting.
func Watch(ctx context.Context, cfg Config, fn func(LinkEvent)) error {
	p, err := newProber()
	if err != nil {
		return err
	}
	defer p.close()

	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	subErr := make(chan error, 1)
	err = netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("netconfig: subscribe to link notifications: %w", err)
	}

	roles := []struct {
		role Role
		c    Interface
		last LinkStatus
	}{{role: RoleInternal, c: cfg.Internal}, {role: RoleExternal, c: cfg.External}}
	for i := range roles {
		roles[i].last = p.status(roles[i].role, roles[i].c)
		fn(LinkEvent{Time: time.Now(), Status: roles[i].last})
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-subErr:
			return fmt.Errorf("netconfig: link notifications failed: %w", err)
		case _, ok := <-updates:
			if !ok {
				return errors.New("netconfig: link notifications stopped")
			}
			// Any update may concern a role: a VLAN link follows its parent,
			// and a link found by MAC may have been renamed.
			for i := range roles {
				s := p.status(roles[i].role, roles[i].c)
				if s != roles[i].last {
					roles[i].last = s
					fn(LinkEvent{Time: time.Now(), Status: s})
				}
			}
		}
	}
}

// prober reads link state through rtnetlink and ethtool netlink.
type prober struct {
	h  *netlink.Handle
	et *ethtool.Client
}

func newProber() (*prober, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netconfig: open rtnetlink: %w", err)
	}
	et, err := ethtool.New()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netconfig: open ethtool netlink (kernel needs "+
			"CONFIG_ETHTOOL_NETLINK): %w", err)
	}
	return &prober{h: h, et: et}, nil
}

func (p *prober) close() {
	p.et.Close()
	p.h.Close()
}

func (p *prober) status(role Role, c Interface) LinkStatus {
	s := LinkStatus{Role: role, Name: c.Name, Duplex: DuplexUnknown}
	if s.Name == "" {
		s.Name = c.MAC
	}
	parent, err := findParent(p.h, role, c)
	if err != nil {
		s.Warning = fmt.Sprintf("interface %s not found: check the cable-side card and "+
			"the network configuration", s.Name)
		return s
	}
	link := parent
	s.Name = parent.Attrs().Name
	if c.VLAN != 0 {
		s.Name = vlanName(s.Name, c.VLAN)
		if link, err = p.h.LinkByName(s.Name); err != nil {
			s.Warning = fmt.Sprintf("VLAN link %s is missing: apply the network configuration",
				s.Name)
			return s
		}
	}
	s.Up = isUp(link.Attrs())

	// The physical link's mode is what clause 5.5 is about; a VLAN link
	// only repeats it.
	s.SpeedMbps, s.Duplex = p.mode(parent.Attrs().Index)
	s.Warning = Assess(s)
	return s
}

func isUp(a *netlink.LinkAttrs) bool {
	if a.Flags&net.FlagUp == 0 {
		return false
	}
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		// Drivers that do not report an operational state: trust the carrier.
		return a.Flags&net.FlagRunning != 0
	}
	return false
}

// mode returns the link's speed and duplex, or 0 and DuplexUnknown when the
// driver does not say (a link without a carrier, a virtual link).
func (p *prober) mode(index int) (int, Duplex) {
	m, err := p.et.LinkMode(ethtool.Interface{Index: index})
	if err != nil {
		return 0, DuplexUnknown
	}
	speed := m.SpeedMegabits
	// The kernel reports SPEED_UNKNOWN as -1, which may arrive as 2^32-1.
	if speed <= 0 || int64(speed) == 1<<32-1 {
		speed = 0
	}
	switch m.Duplex {
	case ethtool.Full:
		return speed, DuplexFull
	case ethtool.Half:
		return speed, DuplexHalf
	}
	return speed, DuplexUnknown
}
