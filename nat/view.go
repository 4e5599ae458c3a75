package nat

import (
	"fmt"
	"net/netip"
	"strings"
)

// RuleRow is a rule as `uswitch rules` shows it, like `iptables -L -v -n`.
type RuleRow struct {
	Hook    string `json:"hook"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Action  string `json:"action"`
	Spec    string `json:"spec"` // the match and target, iptables-style
	Comment string `json:"comment"`
	Line    int    `json:"line,omitempty"`
}

// Rows lists every rule in evaluation order: per hook, filter rules, then
// NAT rules.
func (rs *Rules) Rows() []RuleRow {
	out := []RuleRow{}
	set := rs.set.Load()
	for h := range numHooks {
		for _, group := range [][]*Rule{set.filter[h], set.nat[h]} {
			for _, r := range group {
				out = append(out, RuleRow{Hook: h.String(), Packets: r.Packets.Load(), Bytes: r.Bytes.Load(),
					Action: r.Action.String(), Spec: r.spec(), Comment: r.Comment, Line: r.Line})
			}
		}
	}
	return out
}

// Dump writes the rule set as iptables-save would, one rule a line, for
// golden files and readable diffs.
func (rs *Rules) Dump() string {
	var b strings.Builder
	for _, r := range rs.Rows() {
		fmt.Fprintf(&b, "-A %s %s -m comment --comment %q\n", strings.ToUpper(r.Hook), r.Spec, r.Comment)
	}
	return b.String()
}

// spec renders the rule's match and target in iptables' words.
func (r *Rule) spec() string {
	var f []string
	add := func(s ...string) { f = append(f, s...) }
	if r.src.set {
		add("-s", r.src.text)
	}
	if r.dst.set {
		add("-d", r.dst.text)
	}
	if r.in != "" {
		add("-i", r.in)
	}
	for _, n := range r.notIn {
		add("!", "-i", n)
	}
	if r.out != "" {
		add("-o", r.out)
	}
	if r.proto != 0 {
		add("-p", protoName(r.proto))
	}
	if r.sport[0] != 0 {
		add("--sport", portRange(r.sport))
	}
	if r.dport[0] != 0 {
		add("--dport", portRange(r.dport))
	}
	if r.states != 0 {
		var st []string
		for i, n := range stateNames {
			if r.states&(1<<i) != 0 {
				st = append(st, n)
			}
		}
		add("-m", "conntrack", "--ctstate", strings.Join(st, ","))
	}
	add("-j", strings.ToUpper(r.Action.String()))
	if r.toAddr != ([4]byte{}) || r.toPort != 0 {
		to := netip.AddrFrom4(r.toAddr).String()
		if r.toAddr == ([4]byte{}) {
			to = ""
		}
		if r.toPort != 0 {
			to += fmt.Sprintf(":%d", r.toPort)
		}
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

func portRange(p [2]uint16) string {
	if p[0] == p[1] {
		return fmt.Sprint(p[0])
	}
	return fmt.Sprintf("%d:%d", p[0], p[1])
}
