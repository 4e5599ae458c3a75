package nat

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// Hook is a point of a packet's path where rules are evaluated.
type Hook uint8

// Hooks, in netfilter's order.
const (
	Prerouting Hook = iota
	Input
	Forward
	Output
	Postrouting
	numHooks
)

var hookNames = [numHooks]string{"prerouting", "input", "forward", "output", "postrouting"}

func (h Hook) String() string { return hookNames[h] }

// Action is what a matching rule does.
type Action uint8

// Actions: the first three end the evaluation of a hook's filter rules, the
// NAT ones decide a new connection's translation, log goes on.
const (
	Accept Action = iota
	Drop
	Reject
	SNAT
	DNAT
	Masquerade
	Log
)

var actionNames = []string{"accept", "drop", "reject", "snat", "dnat", "masquerade", "log"}

func (a Action) String() string { return actionNames[a] }

func (a Action) isNAT() bool { return a == SNAT || a == DNAT || a == Masquerade }

// Connection states a rule can match (conntrack --ctstate), as bits.
const (
	StateNew uint8 = 1 << iota
	StateEstablished
	StateRelated
	StateInvalid
	stateDNAT // the connection's destination is translated (built-in rules only)

	stateReopen uint8 = 0xff // update's word for a SYN that replaces its connection (never a rule's state)
)

var stateNames = []string{"NEW", "ESTABLISHED", "RELATED", "INVALID", "DNAT"}

// Meta is what rules match a packet on, filled in by the tracker.
type Meta struct {
	T       Tuple  // the packet's addresses at this hook
	In, Out string // network names, or "uplink"; "" for the router itself
	State   uint8  // one of the State bits, plus stateDNAT
	Size    int
}

// Rule is one compiled rule.
type Rule struct {
	Hook    Hook
	Action  Action
	Comment string       // what built it: a config line or a built-in's purpose
	Line    int          // the [[rule]]'s line in the config; 0 for built-ins
	reason  stats.Reason // counted on the ingress port when it drops

	src, dst     prefix
	proto        uint8
	sport, dport [2]uint16
	in, out      string
	notIn        []string
	states       uint8
	toAddr       [4]byte // snat/dnat target; zero: keep
	toPort       uint16  // zero: keep

	Packets, Bytes atomic.Uint64
	lastLog        atomic.Int64
}

// prefix is an IPv4 prefix compiled for matching.
type prefix struct {
	set       bool
	net, mask uint32
	text      string
}

func compilePrefix(p netip.Prefix) prefix {
	if !p.IsValid() {
		return prefix{}
	}
	a := p.Masked().Addr().As4()
	mask := uint32(0)
	if p.Bits() > 0 {
		mask = ^uint32(0) << (32 - p.Bits())
	}
	return prefix{set: true, net: packet.AddrBits(a), mask: mask, text: p.String()}
}

func (p prefix) match(a [4]byte) bool {
	return !p.set || packet.AddrBits(a)&p.mask == p.net
}

func (r *Rule) match(m *Meta) bool {
	// the state first: the built-in rules that every packet meets
	// (established, invalid) match on it alone
	if s := r.states &^ stateDNAT; s != 0 && s&m.State == 0 {
		return false
	}
	if r.proto != 0 && r.proto != m.T.Proto {
		return false
	}
	if !r.src.match(m.T.Src) || !r.dst.match(m.T.Dst) {
		return false
	}
	if r.sport[0] != 0 && (m.T.Sport < r.sport[0] || m.T.Sport > r.sport[1]) {
		return false
	}
	if r.dport[0] != 0 && (m.T.Dport < r.dport[0] || m.T.Dport > r.dport[1]) {
		return false
	}
	if r.in != "" && r.in != m.In || r.out != "" && r.out != m.Out {
		return false
	}
	if r.states&stateDNAT != 0 && m.State&stateDNAT == 0 {
		return false
	}
	return !slices.Contains(r.notIn, m.In)
}

// Rules is a compiled rule set: per hook, the filter rules (accept, drop,
// reject, log), evaluated for every packet, and the NAT rules, evaluated for
// a connection's first packet only. User rules come before built-ins.
// The hooks read the lists through one atomic pointer, so Replace can swap
// a whole new rule set in while frames flow.
type Rules struct {
	set atomic.Pointer[ruleSet]
	log *slog.Logger
}

// ruleSet is one compiled version of the rules.
type ruleSet struct {
	filter [numHooks][]*Rule
	nat    [numHooks][]*Rule
}

// Replace makes rs evaluate the rules of next from now on (a packet in
// flight finishes with the set it started with). A rule of next that was
// in rs already (same hook, action, match and purpose) keeps its counters.
func (rs *Rules) Replace(next *Rules) {
	type key struct {
		hook          Hook
		action        Action
		spec, comment string
	}
	old := map[key]*Rule{}
	cur := rs.set.Load()
	for h := range numHooks {
		for _, group := range [][]*Rule{cur.filter[h], cur.nat[h]} {
			for _, r := range group {
				old[key{r.Hook, r.Action, r.spec(), r.Comment}] = r
			}
		}
	}
	set := next.set.Load()
	for h := range numHooks {
		for _, group := range [][]*Rule{set.filter[h], set.nat[h]} {
			for _, r := range group {
				if o := old[key{r.Hook, r.Action, r.spec(), r.Comment}]; o != nil {
					r.Packets.Store(o.Packets.Load())
					r.Bytes.Store(o.Bytes.Load())
				}
			}
		}
	}
	rs.set.Store(set)
}

// Verdict is the outcome of a hook: Accept, Drop or Reject, and for the
// last two the reason counted on the ingress port.
type Verdict struct {
	Action Action
	Reason stats.Reason
}

var accept = Verdict{Action: Accept}

// filterVerdict runs hook h's filter rules; no match accepts. rec, when
// set, records the rule that matched; with rec.Dry no rule is counted or
// logged.
func (rs *Rules) filterVerdict(h Hook, m *Meta, rec *trace.Recorder) Verdict {
	for i, r := range rs.set.Load().filter[h] {
		if !r.match(m) {
			continue
		}
		if rec != nil {
			recordRule(rec, h, r, i+1)
		}
		if rec == nil || !rec.Dry {
			r.count(m.Size)
		}
		if r.Action == Log {
			if rec == nil || !rec.Dry {
				rs.logPacket(r, m)
			}
			continue
		}
		return Verdict{Action: r.Action, Reason: r.reason}
	}
	if rec != nil {
		recordRule(rec, h, nil, len(rs.set.Load().filter[h]))
	}
	return accept
}

// natRule returns the first NAT rule of hook h matching a new connection
// (recorded in rec, and not counted when it is dry).
func (rs *Rules) natRule(h Hook, m *Meta, rec *trace.Recorder) *Rule {
	for _, r := range rs.set.Load().nat[h] {
		if r.match(m) {
			if rec == nil || !rec.Dry {
				r.count(m.Size)
			}
			return r
		}
	}
	return nil
}

func (r *Rule) count(n int) {
	r.Packets.Add(1)
	r.Bytes.Add(uint64(n))
}

// logPacket logs a packet matched by a log rule, at most once a second per
// rule so a flood cannot flood the log.
func (rs *Rules) logPacket(r *Rule, m *Meta) {
	now := time.Now().UnixNano()
	last := r.lastLog.Load()
	if now-last < 1e9 || !r.lastLog.CompareAndSwap(last, now) {
		return
	}
	rs.log.Info("rule log", "hook", r.Hook, "rule", r.Comment, "packet", m.T.String(), "in", m.In, "out", m.Out)
}

// Compile builds the rule set of a plan: its [[rule]] entries, then the
// built-in rules that give Docker's behaviour: published ports (DNAT from
// the uplink address, accepted across isolation), hairpin masquerade,
// masquerade to the uplink, established/related acceptance, isolation
// between networks and internal networks' lack of an uplink.
func Compile(p *config.Plan, log *slog.Logger) (*Rules, error) {
	rs := &Rules{log: log}
	rs.set.Store(&ruleSet{})
	for _, cr := range p.Rules {
		r, err := userRule(cr)
		if err != nil {
			return nil, fmt.Errorf("rule at line %d: %w", cr.Line, err)
		}
		rs.add(r)
	}
	var internal []string
	for _, n := range p.Networks {
		if n.Internal {
			internal = append(internal, n.Name)
		}
	}
	// Published ports.
	type pub = published
	var pubs []pub
	for _, ep := range p.Endpoints {
		if len(ep.Interfaces) == 0 {
			continue
		}
		ifc := ep.Interfaces[0]
		if p.Network(ifc.Network).Internal {
			continue // no way in from the uplink, published or not
		}
		for _, pb := range ep.Publish {
			pubs = append(pubs, pub{ep.Name, *p.Network(ifc.Network), ifc.IP.As4(), pb})
		}
	}
	if u := p.Uplink; u != nil {
		for _, b := range pubs {
			rs.add(&Rule{Hook: Prerouting, Action: DNAT, Comment: "publish " + b.ep + " " + b.p.String(),
				dst: compilePrefix(netip.PrefixFrom(u.Address.Addr(), 32)), proto: protoNum(b.p.Proto),
				dport: [2]uint16{b.p.HostPort, b.p.HostPort}, notIn: internal, toAddr: b.target, toPort: b.p.ContainerPort})
		}
	}
	rs.add(&Rule{Hook: Forward, Action: Accept, Comment: "established", states: StateEstablished | StateRelated})
	rs.add(&Rule{Hook: Forward, Action: Drop, Comment: "invalid", reason: stats.CtInvalid, states: StateInvalid})
	for _, b := range pubs {
		rs.add(&Rule{Hook: Forward, Action: Accept, Comment: "publish " + b.ep + " " + b.p.String(),
			dst: compilePrefix(netip.PrefixFrom(netip.AddrFrom4(b.target), 32)), proto: protoNum(b.p.Proto),
			dport: [2]uint16{b.p.ContainerPort, b.p.ContainerPort}, out: b.net.Name, notIn: internal, states: stateDNAT})
	}
	for _, a := range p.Networks {
		for _, b := range p.Networks {
			if a.Name != b.Name && (a.Isolate || b.Isolate) {
				rs.add(&Rule{Hook: Forward, Action: Drop, Comment: "isolation", reason: stats.Isolated, in: a.Name, out: b.Name})
			}
		}
	}
	for _, n := range internal {
		rs.add(&Rule{Hook: Forward, Action: Drop, Comment: "internal", reason: stats.Isolated, in: n, out: UplinkName})
		rs.add(&Rule{Hook: Forward, Action: Drop, Comment: "internal", reason: stats.Isolated, in: UplinkName, out: n})
	}
	for _, b := range pubs {
		rs.add(&Rule{Hook: Postrouting, Action: Masquerade, Comment: "hairpin " + b.ep + " " + b.p.String(),
			src: compilePrefix(b.net.Subnet), dst: compilePrefix(netip.PrefixFrom(netip.AddrFrom4(b.target), 32)),
			proto: protoNum(b.p.Proto), dport: [2]uint16{b.p.ContainerPort, b.p.ContainerPort}, out: b.net.Name, states: stateDNAT})
	}
	if p.Uplink != nil {
		for _, n := range p.Networks {
			if n.Masquerade && !n.Internal {
				rs.add(&Rule{Hook: Postrouting, Action: Masquerade, Comment: "masquerade " + n.Name,
					src: compilePrefix(n.Subnet), out: UplinkName})
			}
		}
	}
	rs.addGatewayHost(p, pubs)
	return rs, nil
}

// UplinkName is how rules name the uplink in `in` and `out`.
const UplinkName = "uplink"

// add appends r to the set being compiled (not yet in use).
func (rs *Rules) add(r *Rule) {
	set := rs.set.Load()
	if r.Action.isNAT() {
		set.nat[r.Hook] = append(set.nat[r.Hook], r)
	} else {
		set.filter[r.Hook] = append(set.filter[r.Hook], r)
	}
}

func protoNum(s string) uint8 {
	switch s {
	case "tcp":
		return packet.ProtoTCP
	case "udp":
		return packet.ProtoUDP
	case "icmp":
		return packet.ProtoICMP
	}
	return 0
}

// userRule compiles a validated [[rule]] entry.
func userRule(c config.Rule) (*Rule, error) {
	r := &Rule{Comment: fmt.Sprintf("rule line %d", c.Line), Line: c.Line, reason: stats.Filtered,
		src: compilePrefix(c.Src), dst: compilePrefix(c.Dst), proto: protoNum(c.Proto),
		sport: c.Sport, dport: c.Dport, in: c.In, out: c.Out}
	h := slices.Index(hookNames[:], c.Hook)
	a := slices.Index(actionNames, c.Action)
	if h < 0 || a < 0 {
		return nil, fmt.Errorf("hook %q or action %q unknown", c.Hook, c.Action)
	}
	r.Hook, r.Action = Hook(h), Action(a)
	for _, s := range c.State {
		i := slices.Index(stateNames[:4], strings.ToUpper(s))
		if i < 0 {
			return nil, fmt.Errorf("state %q unknown", s)
		}
		r.states |= 1 << i
	}
	if c.To != "" {
		host, port := c.To, ""
		if i := strings.LastIndexByte(c.To, ':'); i >= 0 {
			host, port = c.To[:i], c.To[i+1:]
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("to %q: not an IPv4 address", c.To)
		}
		r.toAddr = a.As4()
		if port != "" {
			n, err := strconv.ParseUint(port, 10, 16)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("to %q: bad port", c.To)
			}
			r.toPort = uint16(n)
		}
	}
	return r, nil
}
