package server_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/qapi-az/qapi/appliance/events"
	"github.com/qapi-az/qapi/appliance/server"
	"github.com/qapi-az/qapi/internal/testenv"
)

// statusInNamespace returns srv.Status() computed on a thread inside a new
// network namespace holding the veth pairs ext0-pext0 and int0-pint0, all
// up; down names links to take down first. The namespace goes when the
// thread leaves it and the handle is closed.
func statusInNamespace(t *testing.T, srv *server.Server, down ...string) events.Status {
	t.Helper()
	type result struct {
		st  events.Status
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is left in the namespace and so ends with the
		// goroutine, as LockOSThread without Unlock does.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		for _, v := range []*netlink.Veth{
			{LinkAttrs: netlink.LinkAttrs{Name: "ext0"}, PeerName: "pext0"},
			{LinkAttrs: netlink.LinkAttrs{Name: "int0"}, PeerName: "pint0"},
		} {
			if err := netlink.LinkAdd(v); err != nil {
				ch <- result{err: err}
				return
			}
		}
		for _, name := range []string{"ext0", "pext0", "int0", "pint0"} {
			l, err := netlink.LinkByName(name)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				ch <- result{err: err}
				return
			}
		}
		for _, name := range down {
			l, err := netlink.LinkByName(name)
			if err == nil {
				err = netlink.LinkSetDown(l)
			}
			if err != nil {
				ch <- result{err: err}
				return
			}
		}
		ch <- result{st: srv.Status()}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("veth links in a new network namespace: %v", r.err)
	}
	return r.st
}

// TestStatusLinksReachTheStation reads the links of the network
// configuration from real interfaces, veth pairs in a namespace the test
// makes, through the security server's status, and sends that status over
// the socket to a real monitoring station, which raises the link alerts of
// clause 5.5: none while both links are up at 10 Gbit/s full duplex, a
// critical one once the internal link is down.
func TestStatusLinksReachTheStation(t *testing.T) {
	testenv.NeedRoot(t)
	netPath := filepath.Join(t.TempDir(), "network.json")
	err := os.WriteFile(netPath, []byte(`{
  "internal": {"name": "int0", "addresses": ["198.51.100.10/24"]},
  "external": {"name": "ext0", "addresses": ["192.0.2.10/24"], "gateway": "192.0.2.1"},
  "firewall": {"tlsPort": 5500, "clientPorts": [80], "consolePort": 4000}
}`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, func(e *env, c *server.Config) { c.NetConfig = netPath })

	up := statusInNamespace(t, e.p.srv)
	if len(up.Links) != 2 {
		t.Fatalf("status has links %+v, want ext0 and int0", up.Links)
	}
	for _, l := range up.Links {
		if !l.Up || l.SpeedMbps < 1000 || !l.FullDuplex {
			t.Errorf("link %+v: want up, at least 1000 Mbit/s, full duplex (veth)", l)
		}
	}
	intDown := statusInNamespace(t, e.p.srv, "pint0")

	sock := filepath.Join(t.TempDir(), "monitor.sock")
	st := runStation(t, sock)

	for _, c := range []struct {
		status    events.Status
		wantAlert bool
	}{{up, false}, {intDown, true}} {
		status := c.status
		status.Time = time.Now()
		ss := events.NewSocketSink(sock, events.SocketOptions{
			Status:         func() events.Status { return status },
			StatusInterval: 20 * time.Millisecond})
		eventually(t, "the station to show the server's links", func() bool {
			r, err := st.Report()
			if err != nil || r.Server == nil || len(r.Server.Links) != 2 {
				return false
			}
			down := false
			for _, l := range r.Server.Links {
				down = down || !l.Up
			}
			return down == c.wantAlert
		})
		r, err := st.Report()
		if err != nil {
			t.Fatal(err)
		}
		raised := false
		for _, a := range r.Alerts {
			if a.Name == "link_down" {
				raised = true
				t.Logf("alert %s (%s): %s", a.Name, a.Severity, a.Message)
			}
		}
		if raised != c.wantAlert {
			t.Errorf("link_down alert raised %v, want %v; alerts %+v", raised,
				c.wantAlert, r.Alerts)
		}
		ss.Close()
	}
}
