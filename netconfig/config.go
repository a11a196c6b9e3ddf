package netconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Role names the side of the appliance a network interface faces.
type Role string

// The two roles. DESIGN: external faces the portal network and carries only
// security-server TLS; internal faces the agency network.
const (
	RoleInternal Role = "internal"
	RoleExternal Role = "external"
)

// Limits a configuration must respect.
const (
	// MinMTU is the smallest MTU accepted: IPv6 needs 1280 on every link.
	MinMTU = 1280
	// MaxMTU is the largest MTU accepted: the common jumbo-frame ceiling.
	MaxMTU = 9216
	// MaxVLAN is the largest 802.1Q VLAN id; 0 and 4095 are reserved.
	MaxVLAN = 4094
)

// Config is the declarative network configuration of the appliance: one
// interface per role and the firewall that enforces the roles (clauses
// 4.1.2.2, 2.8). It is read from JSON; see the package documentation.
type Config struct {
	Internal Interface `json:"internal"`
	External Interface `json:"external"`
	Firewall Firewall  `json:"firewall"`
}

// Interface configures the link of one role.
//
// The link is found by Name or by MAC, exactly one of them. With VLAN set,
// that link is the parent and the role's addresses, MTU and routes go onto
// a VLAN link created on it.
type Interface struct {
	// Name is the kernel's interface name, such as "enp1s0".
	Name string `json:"name,omitempty"`
	// MAC is the hardware address, such as "52:54:00:12:34:56": it survives
	// a kernel that renames interfaces.
	MAC string `json:"mac,omitempty"`
	// VLAN is an 802.1Q VLAN id, 1 to 4094; 0 means untagged.
	VLAN int `json:"vlan,omitempty"`
	// DHCP takes the addresses and gateway from a DHCP server. Only the
	// internal role may use it: the portal network needs an address the
	// global configuration can name.
	DHCP bool `json:"dhcp,omitempty"`
	// Addresses are static addresses in CIDR form, "192.0.2.10/24". Apply
	// removes every other address from the link except IPv6 link-local ones.
	Addresses []string `json:"addresses,omitempty"`
	// Gateway is the default router; it must lie inside one of Addresses'
	// subnets (an IPv6 link-local gateway is on every link).
	Gateway string `json:"gateway,omitempty"`
	// Routes are further networks reached through this link.
	Routes []Route `json:"routes,omitempty"`
	// DNS are name servers, written to the resolv.conf path given in
	// Options.
	DNS []string `json:"dns,omitempty"`
	// MTU is the link MTU; 0 leaves it as the kernel has it.
	MTU int `json:"mtu,omitempty"`
}

// Route is one static route.
type Route struct {
	// Destination is the network in CIDR form, "198.51.100.0/24".
	Destination string `json:"destination"`
	// Via is the next router; empty means the network is on the link.
	Via string `json:"via,omitempty"`
}

// Firewall configures the ports the firewall opens on each role. Everything
// else arriving on the appliance is dropped and counted.
type Firewall struct {
	// TLSPort is the security-server port other security servers reach on
	// the external interface (clause 2.2.4).
	TLSPort uint16 `json:"tlsPort"`
	// ClientPorts are the client proxy's ports on the internal interface,
	// where the agency's information systems send requests.
	ClientPorts []uint16 `json:"clientPorts"`
	// AdapterPort is the adapter server's port on the internal interface
	// (clause 2.1.2); 0 when the adapter runs elsewhere.
	AdapterPort uint16 `json:"adapterPort,omitempty"`
	// ConsolePort is the local console's port on the internal interface
	// (clause 2.1.3).
	ConsolePort uint16 `json:"consolePort"`
}

// FieldError is one problem Validate found: Field is the JSON path of the
// offending value, such as "external.addresses[1]".
type FieldError struct {
	Field string
	Msg   string
}

// Error renders the field and the problem: `external.mtu: 100 is outside
// 1280-9216`.
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

var _ error = &FieldError{}

// Load reads and validates the JSON configuration at path. Unknown fields
// are refused, so that a misspelt key is not silently ignored.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("netconfig: open configuration: %w", err)
	}
	defer f.Close()

	var cfg Config
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("netconfig: %s is not a valid configuration: %w", path, err)
	}
	if err := Validate(cfg); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every problem of cfg that can be found without looking at
// the machine, as FieldErrors joined into one error; nil means cfg may be
// applied. Apply calls it before it touches anything.
func Validate(cfg Config) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}

	int4s := validateInterface(RoleInternal, cfg.Internal, bad)
	ext4s := validateInterface(RoleExternal, cfg.External, bad)

	// Clause 2.8 and DESIGN: the two roles are two separate links, else the
	// firewall could not tell the portal network from the agency network.
	in, ex := cfg.Internal, cfg.External
	if in.VLAN == ex.VLAN {
		if in.Name != "" && in.Name == ex.Name {
			bad("external.name", "%q is also the internal interface; each role needs its own",
				ex.Name)
		}
		if in.MAC != "" && ex.MAC != "" && sameMAC(in.MAC, ex.MAC) {
			bad("external.mac", "%q is also the internal interface; each role needs its own",
				ex.MAC)
		}
	}
	for i, p := range ext4s {
		for _, q := range int4s {
			if p.Addr() == q.Addr() {
				bad(fmt.Sprintf("external.addresses[%d]", i),
					"%s is also an internal address", p.Addr())
			}
		}
	}

	validateFirewall(cfg.Firewall, bad)
	return errors.Join(errs...)
}

func sameMAC(a, b string) bool {
	x, err1 := net.ParseMAC(a)
	y, err2 := net.ParseMAC(b)
	return err1 == nil && err2 == nil && x.String() == y.String()
}

// validateInterface checks one role and returns its parsed addresses.
func validateInterface(role Role, c Interface, bad func(string, string, ...any)) []netip.Prefix {
	f := func(name string) string { return string(role) + "." + name }

	switch {
	case c.Name == "" && c.MAC == "":
		bad(f("name"), "give the interface's name or its mac")
	case c.Name != "" && c.MAC != "":
		bad(f("mac"), "give the interface's name or its mac, not both")
	case c.Name != "":
		if msg := checkIfname(c.Name); msg != "" {
			bad(f("name"), "%q %s", c.Name, msg)
		}
	default:
		if _, err := net.ParseMAC(c.MAC); err != nil {
			bad(f("mac"), "%q is not a MAC address", c.MAC)
		}
	}
	if c.VLAN < 0 || c.VLAN > MaxVLAN {
		bad(f("vlan"), "%d is outside 1-%d", c.VLAN, MaxVLAN)
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		bad(f("mtu"), "%d is outside %d-%d", c.MTU, MinMTU, MaxMTU)
	}

	if c.DHCP {
		if role == RoleExternal {
			bad(f("dhcp"), "the external interface needs static addresses")
		}
		if len(c.Addresses) > 0 {
			bad(f("addresses"), "DHCP assigns the addresses; leave addresses empty")
		}
		if c.Gateway != "" {
			bad(f("gateway"), "DHCP assigns the gateway; leave gateway empty")
		}
	} else if len(c.Addresses) == 0 {
		bad(f("addresses"), "give at least one address, such as \"192.0.2.10/24\"")
	}

	var prefixes []netip.Prefix
	seen := map[netip.Addr]int{}
	for i, s := range c.Addresses {
		field := fmt.Sprintf("%s[%d]", f("addresses"), i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad(field, "%q is not a CIDR", s)
			continue
		}
		a := p.Addr()
		if !a.IsGlobalUnicast() || a.IsLinkLocalUnicast() {
			bad(field, "%q is not a unicast address", s)
			continue
		}
		if a.Is4() && p.Bits() < 31 && p.Masked().Addr() == a {
			bad(field, "%q is the network's own address, not a host's", s)
			continue
		}
		if j, dup := seen[a]; dup {
			bad(field, "%s repeats addresses[%d]", a, j)
			continue
		}
		seen[a] = i
		prefixes = append(prefixes, p)
	}

	if c.Gateway != "" {
		gw, err := netip.ParseAddr(c.Gateway)
		switch {
		case err != nil:
			bad(f("gateway"), "%q is not an IP address", c.Gateway)
		case !onLink(gw, prefixes):
			bad(f("gateway"), "%s is outside every address's subnet", gw)
		case isOwn(gw, seen):
			bad(f("gateway"), "%s is the interface's own address", gw)
		}
	}

	for i, r := range c.Routes {
		field := fmt.Sprintf("%s[%d]", f("routes"), i)
		dst, err := netip.ParsePrefix(r.Destination)
		if err != nil {
			bad(field+".destination", "%q is not a CIDR", r.Destination)
			continue
		}
		if dst.Masked() != dst {
			bad(field+".destination", "%q has host bits set; write %s", r.Destination,
				dst.Masked())
		}
		if r.Via == "" {
			continue
		}
		via, err := netip.ParseAddr(r.Via)
		switch {
		case err != nil:
			bad(field+".via", "%q is not an IP address", r.Via)
		case via.Is4() != dst.Addr().Is4():
			bad(field+".via", "%s and destination %s are of different IP versions", via, dst)
		case !c.DHCP && !onLink(via, prefixes):
			bad(field+".via", "%s is outside every address's subnet", via)
		}
	}

	for i, s := range c.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			bad(fmt.Sprintf("%s[%d]", f("dns"), i), "%q is not an IP address", s)
		}
	}
	return prefixes
}

func isOwn(a netip.Addr, own map[netip.Addr]int) bool {
	_, ok := own[a]
	return ok
}

// onLink reports whether a router at gw is reachable directly from one of
// the prefixes. An IPv6 link-local router is reachable on every link.
func onLink(gw netip.Addr, prefixes []netip.Prefix) bool {
	if gw.Is6() && gw.IsLinkLocalUnicast() {
		return true
	}
	for _, p := range prefixes {
		if p.Contains(gw) {
			return true
		}
	}
	return false
}

// checkIfname returns why name cannot be a Linux interface name, or "".
func checkIfname(name string) string {
	if len(name) > 15 {
		return "is longer than 15 bytes"
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return "is not a valid interface name"
	}
	return ""
}

func validateFirewall(fw Firewall, bad func(string, string, ...any)) {
	if fw.TLSPort == 0 {
		bad("firewall.tlsPort", "give the security-server TLS port, such as 5500")
	}
	if fw.ConsolePort == 0 {
		bad("firewall.consolePort", "give the console port, such as 4000")
	}
	if len(fw.ClientPorts) == 0 {
		bad("firewall.clientPorts", "give at least one client proxy port, such as 8080")
	}
	seen := map[uint16]string{}
	check := func(field string, p uint16) {
		if p == 0 {
			bad(field, "port 0 is not a port")
			return
		}
		if other, dup := seen[p]; dup {
			bad(field, "port %d is also %s", p, other)
			return
		}
		seen[p] = field
	}
	for i, p := range fw.ClientPorts {
		check(fmt.Sprintf("firewall.clientPorts[%d]", i), p)
	}
	if fw.AdapterPort != 0 {
		check("firewall.adapterPort", fw.AdapterPort)
	}
	if fw.ConsolePort != 0 {
		check("firewall.consolePort", fw.ConsolePort)
	}
}
