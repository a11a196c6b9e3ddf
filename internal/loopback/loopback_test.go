package loopback

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddr checks that the address is on loopback, below the
// ephemeral range, and free to listen on.
func TestFreeAddr(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(port); host != "127.0.0.1" || n < 20000 || n >= 32000 {
		t.Errorf("FreeAddr() = %s, want 127.0.0.1 with a port in [20000, 32000)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	ln.Close()
}
