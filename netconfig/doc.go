// Package netconfig sets up the appliance's two network interfaces through
// netlink, checks their links, and enforces their roles with an nftables
// firewall (clauses 4.1.2.2, 5.5, 2.8).
//
// The appliance has two roles. The external interface faces the portal
// network and accepts only security-server TLS from other security
// servers. The internal interface faces the agency network and carries the
// client proxy, the adapter and the local console. Both sit in the
// participant's internal network (clause 2.8); the roles keep what each
// side may reach apart.
//
// # Use
//
// Load reads a JSON Config and Validate checks it without touching the
// machine; every problem is a FieldError naming the field. Apply makes the
// machine match the configuration and returns the changes it made; a second
// Apply of the same configuration returns none. RunDHCP keeps a DHCP lease
// on the internal interface when the configuration asks for one. Status
// reports each role's link and Watch reports its changes, each as a
// LinkStatus whose Warning the monitoring station shows. Counters reads
// what the firewall dropped. The functions work in the network namespace of
// the calling OS thread.
//
// # Configuration
//
// One object per role, and the firewall's ports:
//
//	{
//	  "internal": {
//	    "name": "enp2s0",
//	    "addresses": ["198.51.100.10/24", "2001:db8:1::10/64"],
//	    "routes": [{"destination": "203.0.113.0/24", "via": "198.51.100.1"}],
//	    "dns": ["198.51.100.53"]
//	  },
//	  "external": {
//	    "mac": "52:54:00:12:34:56",
//	    "vlan": 120,
//	    "addresses": ["192.0.2.10/24"],
//	    "gateway": "192.0.2.1",
//	    "mtu": 1500
//	  },
//	  "firewall": {
//	    "tlsPort": 5500,
//	    "clientPorts": [80, 443],
//	    "adapterPort": 8443,
//	    "consolePort": 4000
//	  }
//	}
//
// An interface is found by "name" or by "mac". With "vlan" set, that
// interface is the parent of a VLAN link named parent.vlan (enp1s0.120 for
// a parent named enp1s0), which Apply creates and configures. "addresses"
// are the only addresses the link keeps, apart from IPv6 link-local ones;
// Apply turns off IPv6 router advertisements and autoconfiguration there,
// so that a router cannot add others. "gateway" makes the default route;
// the external one is preferred (metric 100 against 200). "routes" without
// "via" are on the link. "dns" of both roles, internal first, go to the
// resolv.conf file named in Options. "mtu" 0 leaves the MTU alone.
// "dhcp": true is allowed on the internal role only, in place of
// "addresses" and "gateway".
//
// # DHCP
//
// With "dhcp" on the internal role, Apply leaves that link's addresses and
// routes alone and RunDHCP, a DHCPv4 client (RFC 2131), keeps a lease there:
// the address carries the lease's lifetime, so the kernel drops it if the
// client stops; the server's router becomes a default route of metric 200;
// its name servers follow the configured ones in resolv.conf, where Apply
// keeps them. The firewall then accepts the server's replies on the
// internal interface.
//
// # Firewall
//
// Apply owns the nftables table inet qapi and leaves every other table
// alone. Its input chain drops by default; it accepts replies to the
// appliance's own traffic, loopback, the ICMP and ICMPv6 a network needs
// (unreachable, packet too big, time exceeded, parameter problem, neighbour
// and router discovery, and echo requests: 20 at once, then 10 a second,
// per interface; the excess is dropped and counted), the TLS
// port on the external interface, and the client, adapter and console ports
// on the internal one. What else arrives is dropped and counted in the
// named counter of its interface's role (drop_external, drop_internal, or
// drop_other for any other link). The forward chain drops everything: the
// appliance routes nothing between the two networks.
//
// The table is replaced in one netlink batch, so the old rules hold until
// the new ones do. Its first rule carries a fingerprint of the
// configuration; an Apply that would build the same rules keeps the table
// and its counters.
//
// # Links
//
// Clause 5.5 asks for at least 1 Gbit/s. A link that is down, slower, in
// half duplex, or whose driver does not say, gets a Warning. A veth pair,
// used in tests, claims 10000 Mbit/s full duplex and refuses a change.
package netconfig
