package nat

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// Hook is a point of a packet's path where rules are evaluated.
type Hook = rule.Hook

// Hooks, in netfilter's order.
const (
	Prerouting  = rule.Prerouting
	Input       = rule.Input
	Forward     = rule.Forward
	Output      = rule.Output
	Postrouting = rule.Postrouting
	numHooks    = rule.NumHooks
)

// Action is what a matching rule does.
type Action = rule.Action

// Actions: the first three end the evaluation of a hook's filter rules, the
// NAT ones decide a new connection's translation, log goes on.
const (
	Accept     = rule.Accept
	Drop       = rule.Drop
	Reject     = rule.Reject
	SNAT       = rule.SNAT
	DNAT       = rule.DNAT
	Masquerade = rule.Masquerade
	Log        = rule.Log
)

// Connection states a rule can match, as the bits of rule.States.
const (
	StateNew         = uint8(rule.New)
	StateEstablished = uint8(rule.Established)
	StateRelated     = uint8(rule.Related)
	StateInvalid     = uint8(rule.Invalid)
	stateDNAT        = uint8(rule.DNATed) // the connection's destination is translated

	stateReopen uint8 = 0xff // update's word for a SYN that replaces its connection (never a rule's state)
)

// Meta is what rules match a packet on, filled in by the tracker.
type Meta struct {
	T     Tuple // the packet's addresses at this hook (IPv6: its ports and protocol)
	State uint8 // one of the State bits, plus stateDNAT
	// V6 says an IPv6 packet, whose addresses are Src6 and Dst6.
	V6      bool
	In, Out string // network names, or rule.Uplink; "" for the router itself
	Size    int
	Src6    [16]byte
	Dst6    [16]byte
}

// Address families: the index of a rule set's lists, as iptables and
// ip6tables are separate tables.
const (
	fam4 = iota
	fam6
	numFams
)

// Rule is one compiled rule: its description and what matching it on the
// hot path needs, with its counters.
type Rule struct {
	// what every packet's match reads first, at the start of the struct
	states   uint8
	proto    uint8
	src, dst prefix
	toAddr   [4]byte // snat/dnat target; zero: keep
	// an IPv6 rule's prefixes and target
	src6, dst6 prefix6
	toAddr6    [16]byte

	rule.Rule

	Packets, Bytes atomic.Uint64
	lastLog        atomic.Int64
}

// prefix is an IPv4 prefix compiled for matching.
type prefix struct {
	set       bool
	net, mask uint32
}

func compilePrefix4(p netip.Prefix) prefix {
	if !p.IsValid() || !p.Addr().Is4() {
		return prefix{}
	}
	a := p.Masked().Addr().As4()
	mask := uint32(0)
	if p.Bits() > 0 {
		mask = ^uint32(0) << (32 - p.Bits())
	}
	return prefix{set: true, net: packet.AddrBits(a), mask: mask}
}

func (p prefix) match(a [4]byte) bool {
	return !p.set || packet.AddrBits(a)&p.mask == p.net
}

// prefix6 is an IPv6 prefix compiled for matching: the network and mask
// as two 64-bit halves.
type prefix6 struct {
	set       bool
	net, mask [2]uint64
}

func compilePrefix6(p netip.Prefix) prefix6 {
	if !p.IsValid() || !p.Addr().Is6() {
		return prefix6{}
	}
	hi, lo := packet.Words6(p.Masked().Addr().As16())
	b := p.Bits() // a shift by 64 gives 0: no bit of that half
	mask := [2]uint64{^uint64(0) << (64 - min(b, 64)), ^uint64(0) << (128 - max(b, 64))}
	return prefix6{set: true, net: [2]uint64{hi, lo}, mask: mask}
}

// target4 and target6 are an SNAT or DNAT rule's target address (zero
// for none, or no rule).
func (r *Rule) target4() (a [4]byte) {
	if r != nil {
		a = r.toAddr
	}
	return a
}

func (r *Rule) target6() (a [16]byte) {
	if r != nil {
		a = r.toAddr6
	}
	return a
}

func (p prefix6) match(a [16]byte) bool {
	if !p.set {
		return true
	}
	hi, lo := packet.Words6(a)
	return hi&p.mask[0] == p.net[0] && lo&p.mask[1] == p.net[1]
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
	if sp := r.Match.Sport; sp[0] != 0 && (m.T.Sport < sp[0] || m.T.Sport > sp[1]) {
		return false
	}
	if dp := r.Match.Dport; dp[0] != 0 && (m.T.Dport < dp[0] || m.T.Dport > dp[1]) {
		return false
	}
	if in, out := r.Match.In, r.Match.Out; in != "" && in != m.In || out != "" && out != m.Out {
		return false
	}
	if r.states&stateDNAT != 0 && m.State&stateDNAT == 0 {
		return false
	}
	if m.V6 && (!r.src6.match(m.Src6) || !r.dst6.match(m.Dst6)) {
		return false
	}
	return !slices.Contains(r.Match.NotIn, m.In)
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

// ruleSet is one compiled version of the rules: per family, what the
// hooks evaluate (a rule with no address of either family in both lists),
// and every rule once, in order, for listings.
type ruleSet struct {
	filter, filter6 [numHooks][]*Rule
	nat, nat6       [numHooks][]*Rule
	all             [numHooks][]*Rule // per hook: filter rules, then NAT rules
}

// lists are the filter and NAT lists of family fam.
func (s *ruleSet) lists(fam int) (filter, nat *[numHooks][]*Rule) {
	if fam == fam6 {
		return &s.filter6, &s.nat6
	}
	return &s.filter, &s.nat
}

// Replace makes rs evaluate the rules of next from now on (a packet in
// flight finishes with the set it started with). A rule of next that was
// in rs already (same hook, action, match and purpose) keeps its counters.
func (rs *Rules) Replace(next *Rules) {
	old := map[string]*Rule{}
	cur := rs.set.Load()
	for h := range numHooks {
		for _, r := range cur.all[h] {
			old[r.String()] = r
		}
	}
	set := next.set.Load()
	for h := range numHooks {
		for _, r := range set.all[h] {
			if o := old[r.String()]; o != nil {
				r.Packets.Store(o.Packets.Load())
				r.Bytes.Store(o.Bytes.Load())
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
	set := rs.set.Load()
	list := set.filter[h]
	if m.V6 {
		list = set.filter6[h]
	}
	for i, r := range list {
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
		return Verdict{Action: r.Action, Reason: r.Reason}
	}
	if rec != nil {
		recordRule(rec, h, nil, len(list))
	}
	return accept
}

// natRule returns the first NAT rule of hook h matching a new connection
// (recorded in rec, and not counted when it is dry).
func (rs *Rules) natRule(h Hook, m *Meta, rec *trace.Recorder) *Rule {
	set := rs.set.Load()
	list := set.nat[h]
	if m.V6 {
		list = set.nat6[h]
	}
	for _, r := range list {
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

// NewRules compiles rules, in the order given within each hook (a
// policy's own rules first, then its built-ins): what a policy produces
// becomes what the hooks evaluate.
func NewRules(rules []rule.Rule, log *slog.Logger) (*Rules, error) {
	rs := &Rules{log: log}
	set := &ruleSet{}
	var natAll [numHooks][]*Rule
	for i := range rules {
		r, err := compile(rules[i])
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", rules[i].Comment, err)
		}
		if r.Action.IsNAT() {
			natAll[r.Hook] = append(natAll[r.Hook], r)
		} else {
			set.all[r.Hook] = append(set.all[r.Hook], r)
		}
		for fam := range numFams {
			filter, nat := set.lists(fam)
			if !r.family(fam) {
				continue
			}
			if r.Action.IsNAT() {
				nat[r.Hook] = append(nat[r.Hook], r)
			} else {
				filter[r.Hook] = append(filter[r.Hook], r)
			}
		}
	}
	for h := range numHooks {
		set.all[h] = append(set.all[h], natAll[h]...)
	}
	rs.set.Store(set)
	return rs, nil
}

// compile checks a rule and prepares it for matching.
func compile(d rule.Rule) (*Rule, error) {
	if d.Hook >= numHooks {
		return nil, fmt.Errorf("hook %d unknown", d.Hook)
	}
	if d.Action > Log {
		return nil, fmt.Errorf("action %d unknown", d.Action)
	}
	proto, ok := protoNum(d.Match.Proto)
	if !ok {
		return nil, fmt.Errorf("protocol %q unknown", d.Match.Proto)
	}
	for _, p := range []rule.Ports{d.Match.Sport, d.Match.Dport} {
		if !p.Any() && p[1] < p[0] {
			return nil, fmt.Errorf("port range %s is empty", p)
		}
	}
	if d.Family() == rule.FamilyMixed {
		return nil, fmt.Errorf("addresses of both IPv4 and IPv6 (src %s, dst %s, target %s)", d.Match.Src, d.Match.Dst, d.ToAddr)
	}
	r := &Rule{Rule: d, src: compilePrefix4(d.Match.Src), dst: compilePrefix4(d.Match.Dst),
		src6: compilePrefix6(d.Match.Src), dst6: compilePrefix6(d.Match.Dst), proto: proto, states: uint8(d.Match.State)}
	switch {
	case d.ToAddr.Is4():
		r.toAddr = d.ToAddr.As4()
	case d.ToAddr.Is6():
		r.toAddr6 = d.ToAddr.As16()
	}
	return r, nil
}

// family reports whether r is evaluated for packets of family fam: a rule
// naming no address, nor a protocol of one family, is evaluated for both.
func (r *Rule) family(fam int) bool {
	switch r.Family() {
	case rule.FamilyIPv4:
		return fam == fam4
	case rule.FamilyIPv6:
		return fam == fam6
	}
	return true
}

// protoNum is the protocol number of a rule's protocol name ("": any).
func protoNum(s string) (uint8, bool) {
	switch s {
	case "":
		return 0, true
	case "tcp":
		return packet.ProtoTCP, true
	case "udp":
		return packet.ProtoUDP, true
	case "icmp":
		return packet.ProtoICMP, true
	case "icmpv6":
		return packet.ProtoICMPv6, true
	}
	return 0, false
}
