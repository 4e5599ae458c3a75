package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/rule"
)

var (
	hooks      = []string{"prerouting", "input", "forward", "output", "postrouting"}
	actions    = []string{"accept", "drop", "reject", "snat", "dnat", "masquerade", "log"}
	protos     = []string{"tcp", "udp", "icmp", "icmpv6", "all"}
	ruleStates = []string{"new", "established", "related", "invalid"}

	// natHooks are the hooks where each NAT action may stand, as in iptables.
	natHooks = map[string][]string{"snat": {"postrouting"}, "masquerade": {"postrouting"}, "dnat": {"prerouting", "output"}}
)

// rules checks the [[rule]] tables.
func (p *parser) rules(raws []rawRule, uplink bool) []Rule {
	var rules []Rule
	for i := range raws {
		table := fmt.Sprintf("rule[%d]", i)
		s := p.scope(table, fmt.Sprintf("rule #%d", i+1))
		rules = append(rules, p.rule(s, &raws[i], uplink))
	}
	return rules
}

// rule checks one [[rule]].
func (p *parser) rule(s scope, r *rawRule, uplink bool) Rule {
	rule := Rule{Line: p.loc.line(s.table, "")}
	rule.Hook = oneOf(s, "hook", r.Hook, hooks, true)
	rule.Action = oneOf(s, "action", r.Action, actions, true)
	if proto := oneOf(s, "proto", r.Proto, protos, false); proto != "all" {
		rule.Proto = proto
	}
	rule.Src = rulePrefix(s, "src", r.Src)
	rule.Dst = rulePrefix(s, "dst", r.Dst)
	rule.Sport = rulePorts(s, "sport", r.Sport, rule.Proto)
	rule.Dport = rulePorts(s, "dport", r.Dport, rule.Proto)
	rule.In = p.ruleIface(s, "in", r.In, uplink)
	rule.Out = p.ruleIface(s, "out", r.Out, uplink)
	switch rule.Hook {
	case "output", "postrouting":
		if rule.In != "" {
			s.errorf("in", "in does not apply to hook %q: packets have no input interface yet", rule.Hook)
		}
	case "prerouting", "input":
		if rule.Out != "" {
			s.errorf("out", "out does not apply to hook %q: packets have no output interface yet", rule.Hook)
		}
	}
	var state []any
	if v, ok := r.State.(string); ok {
		for _, st := range strings.Split(v, ",") {
			state = append(state, strings.TrimSpace(st))
		}
	} else {
		state = s.list("state", r.State)
	}
	for _, st := range state {
		if v := oneOf(s, "state", st, ruleStates, false); v != "" {
			rule.State = append(rule.State, v)
		}
	}

	if allowed, ok := natHooks[rule.Action]; ok && rule.Hook != "" && !slices.Contains(allowed, rule.Hook) {
		s.errorf("action", "action %q only applies to hook %s", rule.Action, strings.Join(allowed, " or "))
	}
	to, hasTo := s.str("to", r.To)
	switch {
	case rule.Action != "snat" && rule.Action != "dnat":
		if r.To != nil && rule.Action != "" {
			s.errorf("to", "to only applies to actions snat and dnat")
		}
	case !hasTo:
		if r.To == nil {
			s.errorf("to", "action %q needs to = \"ip\" or \"ip:port\"", rule.Action)
		}
	default:
		rule.To = natTarget(s, to)
	}
	ruleFamily(s, &rule)
	return rule
}

// ruleFamily refuses a rule whose addresses and protocol name both IPv4
// and IPv6: a rule is of one family (iptables or ip6tables) or, naming no
// address, of both.
func ruleFamily(s scope, r *Rule) {
	var v4, v6 []string
	add := func(what string, a netip.Addr) {
		switch {
		case !a.IsValid():
		case a.Is4():
			v4 = append(v4, what)
		default:
			v6 = append(v6, what)
		}
	}
	add("src", r.Src.Addr())
	add("dst", r.Dst.Addr())
	if r.To != "" {
		a, err := netip.ParseAddr(r.To)
		if err != nil {
			a = netip.MustParseAddrPort(r.To).Addr()
		}
		add("to", a)
	}
	switch r.Proto {
	case "icmp":
		v4 = append(v4, "proto icmp")
	case "icmpv6":
		v6 = append(v6, "proto icmpv6")
	}
	if len(v4) > 0 && len(v6) > 0 {
		s.errorf(v6[0], "%s is IPv6 but %s IPv4: a rule matches one address family", strings.Join(v6, " and "), strings.Join(v4, " and "))
	}
}

// oneOf returns a string value that must be one of choices.
func oneOf(s scope, key string, v any, choices []string, required bool) string {
	var str string
	var ok bool
	if required {
		str, ok = s.required(key, v)
	} else {
		str, ok = s.str(key, v)
	}
	if ok && !slices.Contains(choices, str) {
		s.errorf(key, "%s %q is not one of %s", key, str, strings.Join(choices, ", "))
		return ""
	}
	return str
}

// rulePrefix parses src or dst: an IPv4 or IPv6 prefix, or an address
// meaning /32 or /128.
func rulePrefix(s scope, key string, v any) netip.Prefix {
	str, ok := s.str(key, v)
	if !ok {
		return netip.Prefix{}
	}
	var pfx netip.Prefix
	var err error
	if strings.Contains(str, "/") {
		pfx, err = netip.ParsePrefix(str)
	} else {
		var addr netip.Addr
		addr, err = netip.ParseAddr(str)
		pfx = netip.PrefixFrom(addr, addr.BitLen())
	}
	if err != nil || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "" {
		s.errorf(key, "%s %q is not an IPv4 or IPv6 address or prefix", key, str)
		return netip.Prefix{}
	}
	return pfx.Masked()
}

// rulePorts parses sport or dport: "80", "1000-2000" or an integer.
func rulePorts(s scope, key string, v any, proto string) [2]uint16 {
	var str string
	switch v := v.(type) {
	case nil:
		return [2]uint16{}
	case int64:
		str = strconv.FormatInt(v, 10)
	case string:
		str = v
	default:
		s.errorf(key, "%s must be a port or range like \"1000-2000\", not %s", key, typeName(v))
		return [2]uint16{}
	}
	if proto != "tcp" && proto != "udp" {
		s.errorf(key, "%s needs proto tcp or udp", key)
		return [2]uint16{}
	}
	ports, err := parsePortRange(str)
	if err != nil {
		s.errorf(key, "%s %q: %v", key, str, err)
	}
	return ports
}

// ruleIface checks in or out: a network or "uplink".
func (p *parser) ruleIface(s scope, key string, v any, uplink bool) string {
	name, ok := s.str(key, v)
	switch {
	case !ok:
	case name == rule.Uplink && !uplink:
		s.errorf(key, "%s %q: there is no [uplink]", key, name)
	case name != rule.Uplink && p.nets[name] == nil:
		s.errorf(key, "%s: network %q does not exist", key, name)
	}
	return name
}

// natTarget parses the "ip" or "ip:port" of snat and dnat ("[ip6]:port"
// for IPv6 with a port).
func natTarget(s scope, to string) string {
	if addr, err := netip.ParseAddr(to); err == nil && !addr.Is4In6() && addr.Zone() == "" {
		return addr.String()
	}
	ap, err := netip.ParseAddrPort(to)
	if err != nil || ap.Addr().Is4In6() || ap.Addr().Zone() != "" || ap.Port() == 0 {
		s.errorf("to", "to %q is not an address or address:port (IPv6 in brackets: [fd00::5]:80)", to)
		return ""
	}
	return ap.String()
}
