package netconfig

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// rulesetVersion changes whenever the rules built below change, so that an
// appliance updated to new rules replaces its table although its
// configuration is the same.
const rulesetVersion = 2

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// ApplyFirewall replaces the firewall table with the rules cfg asks for,
// the roles' links being named internal and external, and reports whether
// it changed anything. The replacement is one netlink batch: the kernel
// switches from the old rules to the new ones at once, with no moment
// without a firewall. The table in place is kept, counters included, when
// it was made from the same configuration. Apply calls ApplyFirewall; it
// works in the network namespace of the calling OS thread.
func ApplyFirewall(cfg Config, internal, external string) (bool, error) {
	if err := Validate(cfg); err != nil {
		return false, fmt.Errorf("netconfig: configuration refused, firewall unchanged: %w", err)
	}
	return applyFirewall(cfg, internal, external)
}

func applyFirewall(cfg Config, internal, external string) (bool, error) {
	c, err := openNftables()
	if err != nil {
		return false, err
	}
	defer c.CloseLasting()

	mark := fingerprint(cfg, internal, external)
	if current, err := currentMark(c); err != nil {
		return false, err
	} else if current == mark {
		return false, nil
	}

	queueReplace(c, inputRules(cfg.Firewall, internal, external, cfg.Internal.DHCP), mark)
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
			return false, fmt.Errorf("netconfig: replace firewall table inet %s: the kernel "+
				"lacks an nf_tables feature the rules need: %w", TableName, err)
		}
		return false, fmt.Errorf("netconfig: replace firewall table inet %s: %w", TableName, err)
	}
	return true, nil
}

// openNftables opens a netlink connection to nf_tables in the calling
// thread's network namespace; the caller must CloseLasting it.
func openNftables() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting())
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		return nil, fmt.Errorf("netconfig: the kernel has no nf_tables (CONFIG_NF_TABLES); "+
			"the appliance cannot run without its firewall: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("netconfig: open nftables: %w", err)
	}
	return c, nil
}

// queueReplace queues, on c, the deletion of the firewall table and its
// re-creation with rules as the input chain, the first rule carrying mark.
// The kernel applies the queue at c.Flush as one transaction: all of it or,
// when any part fails, none, leaving the table in place as it was.
func queueReplace(c *nftables.Conn, rules [][]expr.Any, mark string) {
	// Adding the table first makes the delete succeed on a first apply,
	// when there is no table yet.
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	for _, name := range []string{CounterDropInternal, CounterDropExternal, CounterDropOther} {
		c.AddObj(&nftables.NamedObj{
			Table: table, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{},
		})
	}
	drop := nftables.ChainPolicyDrop
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop,
	})
	// The appliance is not a router: nothing passes between the networks.
	c.AddChain(&nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop,
	})
	for i, exprs := range rules {
		r := &nftables.Rule{Table: table, Chain: input, Exprs: exprs}
		if i == 0 {
			r.UserData = userdata.AppendString(nil, userdata.TypeComment, mark)
		}
		c.AddRule(r)
	}
}

// fingerprint names the ruleset built from cfg: it is kept as the comment of
// the table's first rule, so that a second apply can tell nothing changed.
func fingerprint(cfg Config, internal, external string) string {
	b, err := json.Marshal(struct {
		V                  int
		F                  Firewall
		Internal, External string
		DHCP               bool
	}{rulesetVersion, cfg.Firewall, internal, external, cfg.Internal.DHCP})
	if err != nil {
		panic("netconfig: marshal firewall fingerprint: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "qapi ruleset " + hex.EncodeToString(sum[:16])
}

// currentMark returns the fingerprint comment of the table in place, or ""
// when there is none.
func currentMark(c *nftables.Conn) (string, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("netconfig: list nftables tables: %w", err)
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == TableName
	}
	if !found {
		return "", nil
	}
	rules, err := c.GetRules(table, &nftables.Chain{Name: "input", Table: table})
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("netconfig: read firewall rules: %w", err)
	}
	if len(rules) == 0 {
		return "", nil
	}
	s, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment)
	return s, nil
}

// Counters reads the firewall's drop counters. It fails when the firewall
// table is missing, which means the appliance runs unprotected.
func Counters() ([]DropCounter, error) {
	c, err := openNftables()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()

	objs, err := c.GetNamedObjects(table)
	if err != nil {
		return nil, fmt.Errorf("netconfig: read counters of table inet %s "+
			"(is the firewall applied?): %w", TableName, err)
	}
	roles := map[string]Role{
		CounterDropInternal: RoleInternal, CounterDropExternal: RoleExternal,
		CounterDropOther: "",
	}
	var out []DropCounter
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if !ok || n.Type != nftables.ObjTypeCounter {
			continue
		}
		role, ours := roles[n.Name]
		cnt, isCounter := n.Obj.(*expr.Counter)
		if !ours || !isCounter {
			continue
		}
		out = append(out, DropCounter{
			Role: role, Name: n.Name, Packets: cnt.Packets, Bytes: cnt.Bytes,
		})
	}
	if len(out) != len(roles) {
		return out, fmt.Errorf("netconfig: table inet %s has %d of its %d drop counters; "+
			"apply the configuration again", TableName, len(out), len(roles))
	}
	return out, nil
}

// inputRules builds the input chain, one expression list a rule, in order.
// What matches no rule meets the chain's drop policy; the last rules count
// it by role first.
func inputRules(fw Firewall, internal, external string, dhcp bool) [][]expr.Any {
	roles := []struct{ dev, counter string }{
		{external, CounterDropExternal}, {internal, CounterDropInternal},
	}

	// Echo requests beyond the rate are dropped before anything accepts
	// them: conntrack calls the second request of a ping "established".
	var rules [][]expr.Any
	for _, r := range roles {
		rules = append(rules,
			join(iif(r.dev), icmpType(unix.IPPROTO_ICMP, icmpv4Echo), echoOverLimit(),
				countDrop(r.counter)),
			join(iif(r.dev), icmpType(unix.IPPROTO_ICMPV6, icmpv6Echo), echoOverLimit(),
				countDrop(r.counter)))
	}

	rules = append(rules,
		// Replies to what the appliance sent, and ICMP errors about it.
		[]expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{
				SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(
					expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor: binaryutil.NativeEndian.PutUint32(0),
			},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		},
		join(iif("lo"), accept()),
	)

	for _, r := range roles {
		for _, t := range icmpv4Types {
			rules = append(rules, join(iif(r.dev), icmpType(unix.IPPROTO_ICMP, t), accept()))
		}
		for _, t := range icmpv6Types {
			rules = append(rules, join(iif(r.dev), icmpType(unix.IPPROTO_ICMPV6, t), accept()))
		}
		rules = append(rules,
			join(iif(r.dev), icmpType(unix.IPPROTO_ICMP, icmpv4Echo), accept()),
			join(iif(r.dev), icmpType(unix.IPPROTO_ICMPV6, icmpv6Echo), accept()))
	}

	// DESIGN, clause 2.2.4: the external side carries only security-server TLS.
	rules = append(rules, join(iif(external), tcpDport(fw.TLSPort), accept()))

	// The internal side carries the client proxy, the adapter and the console.
	ports := append([]uint16{}, fw.ClientPorts...)
	if fw.AdapterPort != 0 {
		ports = append(ports, fw.AdapterPort)
	}
	ports = append(ports, fw.ConsolePort)
	for _, p := range ports {
		rules = append(rules, join(iif(internal), tcpDport(p), accept()))
	}
	if dhcp {
		// Offers and acknowledgements arrive as broadcasts conntrack cannot
		// match to the request.
		rules = append(rules, join(iif(internal), udpPorts(67, 68), accept()))
		// Client broadcasts, the appliance's own among them (the kernel
		// loops a copy back): nothing listens on port 67, so the stack
		// discards them quietly instead of the drop counter counting noise.
		rules = append(rules, join(iif(internal), broadcast(), udpPorts(68, 67), accept()))
	}

	return append(rules,
		join(iif(external), countDrop(CounterDropExternal)),
		join(iif(internal), countDrop(CounterDropInternal)),
		countDrop(CounterDropOther),
	)
}

func join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

func countDrop(counter string) []expr.Any {
	return []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counter},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// iif matches the input interface by name, so that a rule keeps working
// when the link is re-created with a new index.
func iif(name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func l4proto(proto uint8) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

func icmpType(proto, typ uint8) []expr.Any {
	return append(l4proto(proto),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
	)
}

// echoOverLimit matches the echo requests beyond echoPerSecond, after a
// burst of echoBurst.
func echoOverLimit() []expr.Any {
	return []expr.Any{&expr.Limit{
		Type: expr.LimitTypePkts, Rate: echoPerSecond, Unit: expr.LimitTimeSecond,
		Burst: echoBurst, Over: true,
	}}
}

func tcpDport(port uint16) []expr.Any {
	return append(l4proto(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	)
}

func broadcast() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_BROADCAST}},
	}
}

func udpPorts(sport, dport uint16) []expr.Any {
	return append(l4proto(unix.IPPROTO_UDP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append(
			binaryutil.BigEndian.PutUint16(sport), binaryutil.BigEndian.PutUint16(dport)...)},
	)
}
