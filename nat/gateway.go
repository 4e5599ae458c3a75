package nat

import (
	"net/netip"

	"github.com/uswitch-dev/uswitch/config"
)

// published is a published port of an endpoint: the network of its first
// interface, its address there, and the spec.
type published struct {
	ep     string
	net    config.Network
	target [4]byte
	p      config.Publish
}

// addGatewayHost adds the rules that make each network's gateway the host,
// as docker0's address is on Linux (SPEC §6): from an endpoint, a
// published port answers at its network's gateway as at the uplink
// address, and every other TCP and UDP port of the gateway (but 53 where
// the embedded DNS answers) is the same port of the uplink's host side,
// reached from the uplink address so the host's reply comes back through
// the connection. Internal networks have no way to the host. It comes last
// in each hook: after the DNAT of the uplink address, and after the
// masquerade that already gives masquerading networks the uplink address.
func (rs *Rules) addGatewayHost(p *config.Plan, pubs []published) {
	u := p.Uplink
	if u == nil {
		return
	}
	hostAddr := u.HostAddress.Addr()
	for _, n := range p.Networks {
		if n.Internal || !n.Gateway.Is4() {
			continue
		}
		gw := compilePrefix(netip.PrefixFrom(n.Gateway, 32))
		for _, b := range pubs {
			if n.DNS && b.p.HostPort == 53 {
				continue // the gateway's own DNS answers there
			}
			rs.add(&Rule{Hook: Prerouting, Action: DNAT, Comment: "publish " + b.ep + " " + b.p.String() + " at gateway " + n.Name,
				dst: gw, in: n.Name, proto: protoNum(b.p.Proto),
				dport: [2]uint16{b.p.HostPort, b.p.HostPort}, toAddr: b.target, toPort: b.p.ContainerPort})
		}
		ranges := [][2]uint16{{0, 0}} // any port
		if n.DNS {
			ranges = [][2]uint16{{1, 52}, {54, 65535}}
		}
		for _, proto := range []string{"tcp", "udp"} {
			for _, ports := range ranges {
				rs.add(&Rule{Hook: Prerouting, Action: DNAT, Comment: "host gateway " + n.Name,
					dst: gw, in: n.Name, proto: protoNum(proto), dport: ports, toAddr: hostAddr.As4()})
			}
		}
		if !n.Masquerade { // else "masquerade <network>" does it
			rs.add(&Rule{Hook: Postrouting, Action: Masquerade, Comment: "host gateway " + n.Name,
				src: compilePrefix(n.Subnet), dst: compilePrefix(netip.PrefixFrom(hostAddr, 32)), out: UplinkName, states: stateDNAT})
		}
	}
}
