package netconfig

// TableName is the nftables table (family inet) the firewall owns. Applying
// the firewall replaces this table and leaves every other table alone.
const TableName = "qapi"

// Names of the named counters that count what the firewall drops, by the
// interface the packet arrived on.
const (
	CounterDropInternal = "drop_internal"
	CounterDropExternal = "drop_external"
	// CounterDropOther counts drops on links of neither role.
	CounterDropOther = "drop_other"
)

// DropCounter is one named drop counter of the firewall.
type DropCounter struct {
	// Role is the role of the interface counted; empty for CounterDropOther.
	Role    Role   `json:"role,omitempty"`
	Name    string `json:"name"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// The ICMP the firewall accepts on both roles: what a network needs to work
// (path MTU discovery, errors, IPv6 neighbour and router discovery). Echo
// requests are answered echoBurst at once, then echoPerSecond a second, so
// that a ping works and a flood does not.
var (
	icmpv4Types = []uint8{
		3,  // destination unreachable; carries "fragmentation needed"
		11, // time exceeded
		12, // parameter problem
	}
	icmpv6Types = []uint8{
		1,   // destination unreachable
		2,   // packet too big
		3,   // time exceeded
		4,   // parameter problem
		133, // router solicitation
		134, // router advertisement
		135, // neighbour solicitation
		136, // neighbour advertisement
	}
)

const (
	icmpv4Echo    = 8
	icmpv6Echo    = 128
	echoPerSecond = 10
	echoBurst     = 20
)
