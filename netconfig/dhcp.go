package netconfig

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Lease is an IPv4 address a DHCP server granted to the internal interface.
type Lease struct {
	Address netip.Prefix `json:"address"`
	// Gateway is the router the server named; invalid when it named none.
	Gateway netip.Addr   `json:"gateway,omitzero"`
	DNS     []netip.Addr `json:"dns,omitempty"`
	// Server is the DHCP server's identifier, where renewals go.
	Server netip.Addr `json:"server"`
	// Acquired is when the server acknowledged; the times below count
	// from it.
	Acquired time.Time     `json:"acquired"`
	Duration time.Duration `json:"duration"`
	// Renew (T1) is when to ask the server again, Rebind (T2) when to ask
	// any server (RFC 2131, 4.4.5).
	Renew  time.Duration `json:"renew"`
	Rebind time.Duration `json:"rebind"`
}

// DHCP message types (RFC 2132, 9.6).
const (
	dhcpDiscover = 1
	dhcpOffer    = 2
	dhcpRequest  = 3
	dhcpAck      = 5
	dhcpNak      = 6
)

// DHCP options the client sends or reads (RFC 2132).
const (
	optPad         = 0
	optSubnetMask  = 1
	optRouter      = 3
	optDNS         = 6
	optRequestedIP = 50
	optLeaseTime   = 51
	optMessageType = 53
	optServerID    = 54
	optParamList   = 55
	optRenewalT1   = 58
	optRebindT2    = 59
	optEnd         = 255
)

var dhcpCookie = [4]byte{99, 130, 83, 99}

// dhcpMessage is the part of a DHCP message (RFC 2131, 2) the client uses.
type dhcpMessage struct {
	op        byte // 1 request, 2 reply
	xid       uint32
	broadcast bool // ask the server to broadcast its reply
	ciaddr    netip.Addr
	yiaddr    netip.Addr
	chaddr    net.HardwareAddr
	options   map[byte][]byte
}

// marshal encodes m with its options in ascending order, then end.
func (m *dhcpMessage) marshal() []byte {
	b := make([]byte, 240, 300)
	b[0] = m.op
	b[1] = 1 // Ethernet
	b[2] = byte(len(m.chaddr))
	binary.BigEndian.PutUint32(b[4:], m.xid)
	if m.broadcast {
		binary.BigEndian.PutUint16(b[10:], 0x8000)
	}
	if m.ciaddr.Is4() {
		a := m.ciaddr.As4()
		copy(b[12:16], a[:])
	}
	if m.yiaddr.Is4() {
		a := m.yiaddr.As4()
		copy(b[16:20], a[:])
	}
	copy(b[28:44], m.chaddr)
	copy(b[236:240], dhcpCookie[:])
	for code := 1; code < optEnd; code++ {
		if v, ok := m.options[byte(code)]; ok {
			b = append(b, byte(code), byte(len(v)))
			b = append(b, v...)
		}
	}
	return append(b, optEnd)
}

// parseDHCP decodes a DHCP message; it ignores options it does not know.
func parseDHCP(b []byte) (*dhcpMessage, error) {
	if len(b) < 240 || [4]byte(b[236:240]) != dhcpCookie {
		return nil, errors.New("not a DHCP message")
	}
	hlen := int(b[2])
	if hlen > 16 {
		return nil, fmt.Errorf("hardware address length %d is over 16", hlen)
	}
	m := &dhcpMessage{
		op:        b[0],
		xid:       binary.BigEndian.Uint32(b[4:]),
		broadcast: binary.BigEndian.Uint16(b[10:])&0x8000 != 0,
		ciaddr:    netip.AddrFrom4([4]byte(b[12:16])),
		yiaddr:    netip.AddrFrom4([4]byte(b[16:20])),
		chaddr:    net.HardwareAddr(append([]byte(nil), b[28:28+hlen]...)),
		options:   map[byte][]byte{},
	}
	opts := b[240:]
	for len(opts) > 0 {
		code := opts[0]
		if code == optEnd {
			break
		}
		if code == optPad {
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
			return nil, fmt.Errorf("option %d runs past the message", code)
		}
		n := int(opts[1])
		// RFC 3396: a repeated option continues the first.
		m.options[code] = append(m.options[code], opts[2:2+n]...)
		opts = opts[2+n:]
	}
	return m, nil
}

func (m *dhcpMessage) msgType() byte {
	if v := m.options[optMessageType]; len(v) == 1 {
		return v[0]
	}
	return 0
}

func (m *dhcpMessage) addr(code byte) netip.Addr {
	if v := m.options[code]; len(v) >= 4 {
		return netip.AddrFrom4([4]byte(v[:4]))
	}
	return netip.Addr{}
}

func (m *dhcpMessage) seconds(code byte) time.Duration {
	if v := m.options[code]; len(v) == 4 {
		return time.Duration(binary.BigEndian.Uint32(v)) * time.Second
	}
	return 0
}

// minLease keeps a server's tiny lease from making the client spin.
const minLease = 60 * time.Second

// lease reads the lease an acknowledgement grants, acknowledged at now.
func (m *dhcpMessage) lease(now time.Time) (Lease, error) {
	if !m.yiaddr.Is4() || m.yiaddr.IsUnspecified() {
		return Lease{}, errors.New("the acknowledgement grants no address")
	}
	mask := m.options[optSubnetMask]
	if len(mask) != 4 {
		return Lease{}, errors.New("the acknowledgement has no subnet mask")
	}
	ones, bits := net.IPMask(mask).Size()
	if bits != 32 {
		return Lease{}, fmt.Errorf("subnet mask %v is not contiguous", net.IP(mask))
	}
	l := Lease{
		Address:  netip.PrefixFrom(m.yiaddr, ones),
		Gateway:  m.addr(optRouter),
		Server:   m.addr(optServerID),
		Acquired: now,
		Duration: max(m.seconds(optLeaseTime), minLease),
	}
	if !l.Server.IsValid() {
		return Lease{}, errors.New("the acknowledgement has no server identifier")
	}
	dns := m.options[optDNS]
	for i := 0; i+4 <= len(dns); i += 4 {
		l.DNS = append(l.DNS, netip.AddrFrom4([4]byte(dns[i:i+4])))
	}
	// RFC 2131, 4.4.5: T1 defaults to half the lease, T2 to seven eighths.
	l.Renew, l.Rebind = m.seconds(optRenewalT1), m.seconds(optRebindT2)
	if l.Renew <= 0 || l.Renew >= l.Duration {
		l.Renew = l.Duration / 2
	}
	if l.Rebind <= l.Renew || l.Rebind >= l.Duration {
		l.Rebind = l.Duration * 7 / 8
	}
	return l, nil
}
