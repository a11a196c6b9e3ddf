// Package loopback finds free loopback addresses for the servers that the
// tests and qapi-bench start as separate processes.
package loopback

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
)

// FreeAddr returns a loopback address free now, with a port below Linux's
// ephemeral range (32768 and up). A port of that range can be taken, after
// this check and before the program listens or while it is restarted, by
// any outgoing connection on the machine as its local port.
func FreeAddr() (string, error) {
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr, nil
	}
	return "", errors.New("no free loopback port between 20000 and 32000")
}
