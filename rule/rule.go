// Package rule describes a packet filter or NAT rule as data: the hook it
// runs at, what it matches, what it does and to what. A policy (package
// policy compiles Docker's from a config.Plan) produces rules, nat compiles
// them for matching and counts what they match, and the control API lists
// them with their counters (GET /v1/rules) for the CLI to format: one
// structure from the policy to the table `uswitch rules` prints, no text
// parsed in between.
package rule

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/uswitch-dev/uswitch/stats"
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
	NumHooks
)

var hookNames = [NumHooks]string{"prerouting", "input", "forward", "output", "postrouting"}

// Hooks are the hooks in netfilter's order, as `uswitch rules` lists its
// chains.
func Hooks() []Hook { return []Hook{Prerouting, Input, Forward, Output, Postrouting} }

func (h Hook) String() string {
	if h < NumHooks {
		return hookNames[h]
	}
	return fmt.Sprintf("hook-%d", uint8(h))
}

// ParseHook returns the hook named s (lower case, as config files and the
// API write it).
func ParseHook(s string) (Hook, error) {
	if i := slices.Index(hookNames[:], s); i >= 0 {
		return Hook(i), nil
	}
	return 0, fmt.Errorf("hook %q unknown", s)
}

// MarshalText implements encoding.TextMarshaler.
func (h Hook) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hook) UnmarshalText(b []byte) error {
	v, err := ParseHook(string(b))
	*h = v
	return err
}

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
	numActions
)

var actionNames = [numActions]string{"accept", "drop", "reject", "snat", "dnat", "masquerade", "log"}

func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("action-%d", uint8(a))
}

// IsNAT reports whether a decides a connection's translation.
func (a Action) IsNAT() bool { return a == SNAT || a == DNAT || a == Masquerade }

// ParseAction returns the action named s (lower case).
func ParseAction(s string) (Action, error) {
	if i := slices.Index(actionNames[:], s); i >= 0 {
		return Action(i), nil
	}
	return 0, fmt.Errorf("action %q unknown", s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	*a = v
	return err
}

// States is a set of connection states a rule matches (conntrack
// --ctstate), as bits. In JSON it is a list of names.
type States uint8

// Connection states. DNAT matches a connection whose destination is
// translated (conntrack --ctstate DNAT).
const (
	New States = 1 << iota
	Established
	Related
	Invalid
	DNATed
)

var stateNames = []string{"NEW", "ESTABLISHED", "RELATED", "INVALID", "DNAT"}

// Names lists the states of s, upper case as iptables writes them.
func (s States) Names() []string {
	var out []string
	for i, n := range stateNames {
		if s&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// ParseState returns the state named s (either case).
func ParseState(s string) (States, error) {
	if i := slices.Index(stateNames, strings.ToUpper(s)); i >= 0 {
		return 1 << i, nil
	}
	return 0, fmt.Errorf("state %q unknown", s)
}

// MarshalJSON writes the states as a list of names.
func (s States) MarshalJSON() ([]byte, error) {
	n := s.Names()
	if n == nil {
		n = []string{}
	}
	return json.Marshal(n)
}

// UnmarshalJSON reads a list of names.
func (s *States) UnmarshalJSON(b []byte) error {
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return err
	}
	*s = 0
	for _, n := range names {
		v, err := ParseState(n)
		if err != nil {
			return err
		}
		*s |= v
	}
	return nil
}

// Ports is an inclusive port range; the zero value matches any port.
type Ports [2]uint16

// Any reports whether p matches any port.
func (p Ports) Any() bool { return p[0] == 0 }

func (p Ports) String() string {
	if p[0] == p[1] {
		return fmt.Sprint(p[0])
	}
	return fmt.Sprintf("%d:%d", p[0], p[1])
}

// Match is what a rule matches a packet on; a zero field matches anything.
type Match struct {
	Src   netip.Prefix `json:"src,omitzero"`
	Dst   netip.Prefix `json:"dst,omitzero"`
	Proto string       `json:"proto,omitempty"` // "tcp", "udp", "icmp"
	Sport Ports        `json:"sport,omitzero"`
	Dport Ports        `json:"dport,omitzero"`
	In    string       `json:"in,omitempty"`     // ingress network, or "uplink"
	NotIn []string     `json:"not_in,omitempty"` // ingress networks it does not match
	Out   string       `json:"out,omitempty"`    // egress network, or "uplink"
	State States       `json:"state,omitzero"`
}

// Uplink is the uplink's name, the one definition of it: how rules name it
// in In and Out, the router's port to the host and its TAP's port (SPEC
// §1: "the uplink is uplink"), and a name no network or endpoint may take.
const Uplink = "uplink"

// Rule is one rule of a hook.
type Rule struct {
	Hook   Hook   `json:"hook"`
	Action Action `json:"action"`
	Match  Match  `json:"match"`
	// ToAddr and ToPort are an SNAT or DNAT rule's target; zero keeps
	// the packet's.
	ToAddr  netip.Addr `json:"to_addr,omitzero"`
	ToPort  uint16     `json:"to_port,omitempty"`
	Comment string     `json:"comment"`        // what built it: a config line or a built-in's purpose
	Line    int        `json:"line,omitempty"` // the [[rule]]'s line in the config; 0 for built-ins
	// Reason is what a drop or reject counts on the ingress port.
	Reason stats.Reason `json:"-"`
}

// Listed is a rule as the API lists it: its position in its hook's chain
// (from 1, in evaluation order: filter rules, then NAT rules) and its
// counters.
type Listed struct {
	Rule
	Family   Family `json:"family"` // the rule's family: ipv4, ipv6, or any (both)
	Position int    `json:"position"`
	Packets  uint64 `json:"packets"`
	Bytes    uint64 `json:"bytes"`
}

// Spec renders the rule's match and target in iptables' words, as
// iptables-save writes them after the chain.
func (r *Rule) Spec() string {
	var f []string
	add := func(s ...string) { f = append(f, s...) }
	m := &r.Match
	if m.Src.IsValid() {
		add("-s", m.Src.String())
	}
	if m.Dst.IsValid() {
		add("-d", m.Dst.String())
	}
	if m.In != "" {
		add("-i", m.In)
	}
	for _, n := range m.NotIn {
		add("!", "-i", n)
	}
	if m.Out != "" {
		add("-o", m.Out)
	}
	if m.Proto != "" {
		add("-p", m.Proto)
	}
	if !m.Sport.Any() {
		add("--sport", m.Sport.String())
	}
	if !m.Dport.Any() {
		add("--dport", m.Dport.String())
	}
	if m.State != 0 {
		add("-m", "conntrack", "--ctstate", strings.Join(m.State.Names(), ","))
	}
	add("-j", strings.ToUpper(r.Action.String()))
	if to := r.Target(); to != "" {
		opt := "--to-source"
		if r.Action == DNAT {
			opt = "--to-destination"
		}
		add(opt, to)
	}
	if r.Action == Reject {
		add("--reject-with", "icmp-port-unreachable/tcp-reset")
	}
	return strings.Join(f, " ")
}

// Target is the SNAT or DNAT target as iptables writes it (address, :port
// or address:port), or "".
func (r *Rule) Target() string {
	switch {
	case r.ToAddr.IsValid() && r.ToPort != 0:
		return netip.AddrPortFrom(r.ToAddr, r.ToPort).String() // [fd00::5]:80 for IPv6
	case r.ToAddr.IsValid():
		return r.ToAddr.String()
	case r.ToPort != 0:
		return fmt.Sprintf(":%d", r.ToPort)
	}
	return ""
}

// String is the rule as iptables-save writes one, for golden files and
// readable diffs.
func (r *Rule) String() string {
	return fmt.Sprintf("-A %s %s -m comment --comment %q", strings.ToUpper(r.Hook.String()), r.Spec(), r.Comment)
}

// Family is the address family a rule applies to, as iptables and
// ip6tables hold separate rules.
type Family uint8

// Families: a rule that names no address and no ICMP protocol of one
// family applies to both.
const (
	FamilyAny Family = iota
	FamilyIPv4
	FamilyIPv6
	FamilyMixed // addresses of both families: refused
)

func (f Family) String() string {
	return [...]string{"any", "ipv4", "ipv6", "mixed"}[f&3]
}

// MarshalText implements encoding.TextMarshaler.
func (f Family) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (f *Family) UnmarshalText(b []byte) error {
	for v := range FamilyMixed + 1 {
		if v.String() == string(b) {
			*f = v
			return nil
		}
	}
	return fmt.Errorf("family %q unknown", b)
}

// Family is the family r's addresses (source, destination, target) and
// protocol (icmp is IPv4's, icmpv6 IPv6's) say.
func (r *Rule) Family() Family {
	var f Family
	add := func(is4 bool) {
		if is4 {
			f |= FamilyIPv4
		} else {
			f |= FamilyIPv6
		}
	}
	for _, a := range []netip.Addr{r.Match.Src.Addr(), r.Match.Dst.Addr(), r.ToAddr} {
		if a.IsValid() {
			add(a.Is4())
		}
	}
	switch r.Match.Proto {
	case "icmp":
		add(true)
	case "icmpv6":
		add(false)
	}
	return f
}
