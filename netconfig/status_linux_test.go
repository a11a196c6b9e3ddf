package netconfig

import (
	"context"
	"testing"
	"time"

	"github.com/mdlayher/ethtool"
	"github.com/vishvananda/netlink"
)

func TestStatusOfVeth(t *testing.T) {
	l := newLab(t)
	cfg := labConfig(l)
	in(t, l.app, func() {
		down, err := Status(cfg)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		for _, s := range down {
			if s.Up || s.Warning == "" {
				t.Errorf("before Apply %+v: want down with a warning", s)
			}
		}

		mustApply(t, cfg, Options{})
		up, err := Status(cfg)
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		for i, role := range []Role{RoleInternal, RoleExternal} {
			s := up[i]
			// What the veth driver reports, for the record: it has no real
			// speed and claims one.
			t.Logf("veth %s as ethtool netlink reports it: %+v", s.Name, s)
			if s.Role != role || !s.Up {
				t.Errorf("after Apply %+v: want role %s up", s, role)
			}
			if s.SpeedMbps <= 0 || s.Duplex == DuplexUnknown {
				t.Errorf("%s: speed %d, duplex %s: want what the driver reports", s.Name,
					s.SpeedMbps, s.Duplex)
			}
			if s.Warning != Assess(s) {
				t.Errorf("%s: warning %q, want Assess's %q", s.Name, s.Warning, Assess(s))
			}
		}
		if up[1].Name != "ext0" {
			t.Errorf("external link found by MAC is %q, want ext0", up[1].Name)
		}

		// A veth cannot be slowed down on most kernels; where it can, the
		// warning must follow. TestAssess covers the warnings either way.
		et, err := ethtool.New()
		if err != nil {
			t.Fatal(err)
		}
		defer et.Close()
		speed := 100
		err = et.UpdateLinkMode(ethtool.Interface{Name: "ext0"},
			&ethtool.LinkModeUpdate{SpeedMegabits: &speed})
		if err != nil {
			t.Logf("veth refuses a speed change (%v); the slow-link path is TestAssess's", err)
			return
		}
		slow, err := Status(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if slow[1].SpeedMbps != 100 || slow[1].Warning == "" {
			t.Errorf("at 100 Mb/s: %+v, want a clause 5.5 warning", slow[1])
		}
	})
}

func TestWatchReportsCarrierChanges(t *testing.T) {
	l := newLab(t)
	cfg := labConfig(l)
	in(t, l.app, func() { mustApply(t, cfg, Options{}) })

	events := make(chan LinkEvent, 16)
	ctx, cancel := context.WithCancel(context.Background())
	watchErr := make(chan error, 1)
	go func() {
		err := enter(l.app, func() {
			watchErr <- Watch(ctx, cfg, func(e LinkEvent) { events <- e })
		})
		if err != nil {
			watchErr <- err
		}
	}()
	defer func() {
		cancel()
		if err := <-watchErr; err != nil {
			t.Errorf("Watch: %v", err)
		}
	}()

	// next waits for the next event of role; the limit only keeps a broken
	// Watch from hanging the suite.
	next := func(role Role) LinkStatus {
		t.Helper()
		limit := time.After(10 * time.Second)
		for {
			select {
			case e := <-events:
				if e.Status.Role == role {
					return e.Status
				}
			case err := <-watchErr:
				t.Fatalf("Watch returned early: %v", err)
			case <-limit:
				t.Fatalf("no %s link event", role)
			}
		}
	}
	for _, role := range []Role{RoleInternal, RoleExternal} {
		if s := next(role); !s.Up {
			t.Fatalf("initial event %+v: want the link up", s)
		}
	}

	setPeer := func(up bool) {
		in(t, l.peer, func() {
			link, err := netlink.LinkByName("pext0")
			if err != nil {
				t.Fatal(err)
			}
			if up {
				err = netlink.LinkSetUp(link)
			} else {
				err = netlink.LinkSetDown(link)
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	setPeer(false)
	if s := next(RoleExternal); s.Up || s.Warning == "" {
		t.Errorf("after the peer went down: %+v, want external down with a warning", s)
	}
	setPeer(true)
	if s := next(RoleExternal); !s.Up {
		t.Errorf("after the peer came back: %+v, want external up", s)
	}
}
