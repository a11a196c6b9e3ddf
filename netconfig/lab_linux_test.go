package netconfig

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/qapi-az/qapi/internal/testenv"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// lab is two network namespaces the test made: the appliance's, with links
// ext0 and int0, and the peer's, holding their other ends pext0 and pint0.
// Only TEST-NET addresses inside these namespaces carry traffic.
type lab struct {
	app, peer netns.NsHandle
	extMAC    net.HardwareAddr
}

// Addresses of the lab. The appliance side's are in the configuration.
const (
	peerExt  = "192.0.2.2"    // pext0, the portal network side
	peerInt  = "198.51.100.2" // pint0, the agency network side
	peerInt6 = "2001:db8:1::2"
)

// newLab makes the namespaces; they vanish when the test ends, as nothing
// but the handles the cleanup closes keeps them alive.
func newLab(t testing.TB) *lab {
	t.Helper()
	testenv.NeedRoot(t)

	l := &lab{extMAC: net.HardwareAddr{0x02, 0, 0x5e, 0, 0x53, 0x01}}
	l.app = newNS(t)
	l.peer = newNS(t)

	app, err := netlink.NewHandleAt(l.app)
	if err != nil {
		t.Fatalf("netlink handle in the appliance namespace: %v", err)
	}
	defer app.Close()
	peer, err := netlink.NewHandleAt(l.peer)
	if err != nil {
		t.Fatalf("netlink handle in the peer namespace: %v", err)
	}
	defer peer.Close()

	for _, v := range []*netlink.Veth{
		{LinkAttrs: netlink.LinkAttrs{Name: "ext0", HardwareAddr: l.extMAC},
			PeerName: "pext0", PeerNamespace: netlink.NsFd(l.peer)},
		{LinkAttrs: netlink.LinkAttrs{Name: "int0"},
			PeerName: "pint0", PeerNamespace: netlink.NsFd(l.peer)},
	} {
		if err := app.LinkAdd(v); err != nil {
			t.Fatalf("create veth %s: %v", v.Name, err)
		}
	}
	for _, a := range []struct{ link, cidr string }{
		{"pext0", peerExt + "/24"},
		{"pint0", peerInt + "/24"},
		{"pint0", peerInt6 + "/64"},
	} {
		link, err := peer.LinkByName(a.link)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(a.cidr)
		// Without duplicate address detection the address works at once.
		addr.Flags = unix.IFA_F_NODAD
		if err := peer.AddrAdd(link, addr); err != nil {
			t.Fatalf("address %s on %s: %v", a.cidr, a.link, err)
		}
		if err := peer.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	in(t, l.app, func() {
		for _, link := range []string{"ext0", "int0"} {
			path := "/proc/sys/net/ipv6/conf/" + link + "/accept_dad"
			if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
				t.Fatalf("turn duplicate address detection off: %v", err)
			}
		}
	})
	for _, h := range []*netlink.Handle{app, peer} {
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

// newNS makes an unnamed network namespace, closed when t ends.
func newNS(t testing.TB) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("current network namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, and so dies with this goroutine.
		panic("cannot return to the original network namespace: " + err.Error())
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// in runs fn on an OS thread inside ns. Everything fn opens (netlink,
// nftables and TCP sockets) belongs to ns for its whole life.
func in(t testing.TB, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := enter(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// enter is in for goroutines other than the test's: it returns an error
// when it cannot enter ns, and then does not run fn.
func enter(ns netns.NsHandle, fn func()) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime ends it with the goroutine.
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
	return nil
}

// waitOperUp returns once the link name in ns is operationally up: then
// the kernel passes its packets. A veth gets there a moment after both ends
// are set up, and a packet sent in that moment is lost.
func waitOperUp(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &ns, ListExisting: true})
	if err != nil {
		t.Fatal(err)
	}
	for u := range updates {
		if u.Attrs().Name == name && u.Attrs().OperState == netlink.OperUp {
			return
		}
	}
	t.Fatalf("link notifications stopped before %s came up", name)
}

// waitLinks waits until all four links of the lab pass packets; call it
// after Apply brought the appliance's ends up.
func (l *lab) waitLinks(t *testing.T) {
	t.Helper()
	waitOperUp(t, l.app, "ext0")
	waitOperUp(t, l.app, "int0")
	waitOperUp(t, l.peer, "pext0")
	waitOperUp(t, l.peer, "pint0")
}
