// Package policy is Docker's network policy as rules: it compiles a
// config.Plan into the rule list nat evaluates (package rule), the plan's
// own [[rule]] entries first, then the built-in rules that give Docker's
// behaviour: published ports (DNAT from the uplink address, accepted
// across isolation), hairpin masquerade, masquerade to the uplink,
// established/related acceptance, isolation between networks, internal
// networks' lack of an uplink, and each gateway as the host. Rules that
// name addresses come in both families where the plan has them, as
// Docker writes iptables and ip6tables rules: published ports on the
// uplink's address6 to endpoints' ip6, masquerade6 to address6, hairpin
// and the gateway6 as the host; the isolation, internal and state rules
// name no address and hold for both. nat knows
// nothing of configs; the datapath hands it what Compile returns, and
// `uswitch check` prints the same list.
package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/stats"
)

// Compile returns the rules of a plan in evaluation order: per hook in
// netfilter's order, the filter rules, then the NAT rules (as nat lists
// them), the plan's own before the built-ins in each.
func Compile(p *config.Plan) ([]rule.Rule, error) {
	var rs []rule.Rule
	add := func(r rule.Rule) { rs = append(rs, r) }
	for _, cr := range p.Rules {
		r, err := userRule(cr)
		if err != nil {
			return nil, fmt.Errorf("rule at line %d: %w", cr.Line, err)
		}
		add(r)
	}
	var internal []string
	for _, n := range p.Networks {
		if n.Internal {
			internal = append(internal, n.Name)
		}
	}
	pubs := publishedPorts(p)
	if u := p.Uplink; u != nil {
		for _, b := range pubs {
			for _, t := range b.targets(u.Address.Addr(), u.Address6.Addr()) {
				add(rule.Rule{Hook: rule.Prerouting, Action: rule.DNAT, Comment: b.comment(),
					Match: rule.Match{Dst: host(t.via), Proto: b.p.Proto,
						Dport: b.hostPort(), NotIn: internal},
					ToAddr: t.to, ToPort: b.p.ContainerPort})
			}
		}
	}
	add(rule.Rule{Hook: rule.Forward, Action: rule.Accept, Comment: "established",
		Match: rule.Match{State: rule.Established | rule.Related}})
	add(rule.Rule{Hook: rule.Forward, Action: rule.Drop, Comment: "invalid", Reason: stats.CtInvalid,
		Match: rule.Match{State: rule.Invalid}})
	for _, b := range pubs {
		for _, t := range b.targets(netip.IPv4Unspecified(), netip.IPv6Unspecified()) {
			add(rule.Rule{Hook: rule.Forward, Action: rule.Accept, Comment: b.comment(),
				Match: rule.Match{Dst: host(t.to), Proto: b.p.Proto, Dport: b.containerPort(),
					Out: b.net.Name, NotIn: internal, State: rule.DNATed}})
		}
	}
	for _, a := range p.Networks {
		for _, b := range p.Networks {
			if a.Name != b.Name && (a.Isolate || b.Isolate) {
				add(rule.Rule{Hook: rule.Forward, Action: rule.Drop, Comment: "isolation", Reason: stats.Isolated,
					Match: rule.Match{In: a.Name, Out: b.Name}})
			}
		}
	}
	for _, n := range internal {
		add(rule.Rule{Hook: rule.Forward, Action: rule.Drop, Comment: "internal", Reason: stats.Isolated,
			Match: rule.Match{In: n, Out: rule.Uplink}})
		add(rule.Rule{Hook: rule.Forward, Action: rule.Drop, Comment: "internal", Reason: stats.Isolated,
			Match: rule.Match{In: rule.Uplink, Out: n}})
	}
	for _, b := range pubs {
		for _, t := range b.targets(netip.IPv4Unspecified(), netip.IPv6Unspecified()) {
			subnet := b.net.Subnet
			if t.to.Is6() {
				subnet = b.net.Subnet6
			}
			add(rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade, Comment: "hairpin " + b.ep + " " + b.p.String(),
				Match: rule.Match{Src: subnet, Dst: host(t.to), Proto: b.p.Proto,
					Dport: b.containerPort(), Out: b.net.Name, State: rule.DNATed}})
		}
	}
	if u := p.Uplink; u != nil {
		for _, n := range p.Networks {
			if n.Masquerade && !n.Internal {
				add(rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade, Comment: "masquerade " + n.Name,
					Match: rule.Match{Src: n.Subnet, Out: rule.Uplink}})
			}
			if n.Masquerade6 && !n.Internal && n.Subnet6.IsValid() && u.Address6.IsValid() {
				add(rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade, Comment: "masquerade6 " + n.Name,
					Match: rule.Match{Src: n.Subnet6, Out: rule.Uplink}})
			}
		}
	}
	rs = append(rs, gatewayHost(p, pubs)...)
	slices.SortStableFunc(rs, func(a, b rule.Rule) int { return cmp.Compare(order(&a), order(&b)) })
	return rs, nil
}

// order is where a rule's group comes in evaluation order.
func order(r *rule.Rule) int {
	n := 2 * int(r.Hook)
	if r.Action.IsNAT() {
		n++
	}
	return n
}

// published is a published port of an endpoint: the network of its first
// interface, its addresses there (target6 zero without IPv6), and the
// spec.
type published struct {
	ep      string
	net     config.Network
	target  netip.Addr
	target6 netip.Addr
	p       config.Publish
}

// dnat is one way to a published port: an address it is reached at and
// the endpoint's address it goes to.
type dnat struct{ via, to netip.Addr }

// targets are the ways to b from addresses via4 and via6: IPv4 always,
// IPv6 when both via6 and the endpoint's IPv6 address are there.
func (b *published) targets(via4, via6 netip.Addr) []dnat {
	ts := []dnat{{via4, b.target}}
	if via6.IsValid() && b.target6.IsValid() {
		ts = append(ts, dnat{via6, b.target6})
	}
	return ts
}

func (b *published) comment() string      { return "publish " + b.ep + " " + b.p.String() }
func (b *published) hostPort() rule.Ports { return rule.Ports{b.p.HostPort, b.p.HostPort} }
func (b *published) containerPort() rule.Ports {
	return rule.Ports{b.p.ContainerPort, b.p.ContainerPort}
}

// publishedPorts lists the ports published by endpoints on networks with
// a way in from the uplink.
func publishedPorts(p *config.Plan) []published {
	var pubs []published
	for _, ep := range p.Endpoints {
		if len(ep.Interfaces) == 0 {
			continue
		}
		ifc := ep.Interfaces[0]
		if p.Network(ifc.Network).Internal {
			continue // no way in from the uplink, published or not
		}
		for _, pb := range ep.Publish {
			pubs = append(pubs, published{ep.Name, *p.Network(ifc.Network), ifc.IP, ifc.IP6, pb})
		}
	}
	return pubs
}

// host is the /32 (IPv6: /128) prefix of a.
func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

// gatewayHost returns the rules that make each network's gateway the host,
// as docker0's address is on Linux (SPEC §6): from an endpoint, a
// published port answers at its network's gateway as at the uplink
// address, and every other TCP and UDP port of the gateway (but 53 where
// the embedded DNS answers) is the same port of the uplink's host side,
// reached from the uplink address so the host's reply comes back through
// the connection. Internal networks have no way to the host. They come
// last in each hook: after the DNAT of the uplink address, and after the
// masquerade that already gives masquerading networks the uplink address.
func gatewayHost(p *config.Plan, pubs []published) []rule.Rule {
	u := p.Uplink
	if u == nil {
		return nil
	}
	var rs []rule.Rule
	for _, n := range p.Networks {
		if n.Internal {
			continue
		}
		// the gateway and its family's host side, subnet and masquerade:
		// IPv4, and IPv6 where the network and the uplink both have it
		type side struct {
			gw, host netip.Addr
			subnet   netip.Prefix
			masq     bool
		}
		sides := []side{{n.Gateway, u.HostAddress.Addr(), n.Subnet, n.Masquerade}}
		if n.Gateway6.IsValid() && u.Address6.IsValid() && u.HostAddress6.IsValid() {
			sides = append(sides, side{n.Gateway6, u.HostAddress6.Addr(), n.Subnet6, n.Masquerade6})
		}
		for _, sd := range sides {
			if !sd.gw.IsValid() {
				continue
			}
			gw := host(sd.gw)
			for _, b := range pubs {
				to := b.target
				if sd.gw.Is6() {
					to = b.target6
				}
				if n.DNS && b.p.HostPort == 53 || !to.IsValid() {
					continue // the gateway's own DNS answers there; or no IPv6 to go to
				}
				rs = append(rs, rule.Rule{Hook: rule.Prerouting, Action: rule.DNAT, Comment: b.comment() + " at gateway " + n.Name,
					Match:  rule.Match{Dst: gw, In: n.Name, Proto: b.p.Proto, Dport: b.hostPort()},
					ToAddr: to, ToPort: b.p.ContainerPort})
			}
			ranges := []rule.Ports{{}} // any port
			if n.DNS {
				ranges = []rule.Ports{{1, 52}, {54, 65535}}
			}
			for _, proto := range []string{"tcp", "udp"} {
				for _, ports := range ranges {
					rs = append(rs, rule.Rule{Hook: rule.Prerouting, Action: rule.DNAT, Comment: "host gateway " + n.Name,
						Match: rule.Match{Dst: gw, In: n.Name, Proto: proto, Dport: ports}, ToAddr: sd.host})
				}
			}
			if !sd.masq { // else "masquerade <network>" does it
				rs = append(rs, rule.Rule{Hook: rule.Postrouting, Action: rule.Masquerade, Comment: "host gateway " + n.Name,
					Match: rule.Match{Src: sd.subnet, Dst: host(sd.host), Out: rule.Uplink, State: rule.DNATed}})
			}
		}
	}
	return rs
}

// userRule compiles a validated [[rule]] entry.
func userRule(c config.Rule) (rule.Rule, error) {
	r := rule.Rule{Comment: fmt.Sprintf("rule line %d", c.Line), Line: c.Line, Reason: stats.Filtered,
		Match: rule.Match{Src: c.Src, Dst: c.Dst, Proto: c.Proto, Sport: c.Sport, Dport: c.Dport, In: c.In, Out: c.Out}}
	var err error
	if r.Hook, err = rule.ParseHook(c.Hook); err != nil {
		return r, err
	}
	if r.Action, err = rule.ParseAction(c.Action); err != nil {
		return r, err
	}
	for _, s := range c.State {
		st, err := rule.ParseState(s)
		if err != nil || st == rule.DNATed {
			return r, fmt.Errorf("state %q unknown", s)
		}
		r.Match.State |= st
	}
	if c.To != "" {
		a, err := netip.ParseAddr(c.To)
		if err != nil {
			ap, err := netip.ParseAddrPort(c.To)
			if err != nil || ap.Port() == 0 {
				return r, fmt.Errorf("to %q: not an address or address:port", c.To)
			}
			a, r.ToPort = ap.Addr(), ap.Port()
		}
		if a.Is4In6() || a.Zone() != "" || a.Is6() && !a.IsGlobalUnicast() {
			return r, fmt.Errorf("to %q: not a unicast IPv4 or IPv6 address", c.To)
		}
		r.ToAddr = a
	}
	if r.Family() == rule.FamilyMixed {
		return r, fmt.Errorf("addresses of both IPv4 and IPv6")
	}
	return r, nil
}
