package nat

import "github.com/uswitch-dev/uswitch/rule"

// List lists every rule with its counters in evaluation order: per hook in
// netfilter's order, filter rules, then NAT rules, each numbered from 1
// within its hook.
func (rs *Rules) List() []rule.Listed {
	out := []rule.Listed{}
	set := rs.set.Load()
	for h := range numHooks {
		n := 0
		for _, r := range set.all[h] {
			n++
			out = append(out, rule.Listed{Rule: r.Rule, Family: r.Family(), Position: n, Packets: r.Packets.Load(), Bytes: r.Bytes.Load()})
		}
	}
	return out
}
