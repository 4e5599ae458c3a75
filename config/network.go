package config

import (
	"fmt"
	"net/netip"
	"regexp"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

// netState is a network during resolution.
type netState struct {
	*Network
	s     scope
	valid bool                  // subnet and gateway are usable
	taken map[netip.Addr]string // address → who holds it, IPv4 and IPv6
	next  netip.Addr            // where the search for a free address resumes
	next6 netip.Addr            // the same in subnet6
}

var networkName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// networks checks the [[network]] tables, against each other and the uplink.
func (p *parser) networks(raws []rawNetwork, up *Uplink) []Network {
	nets := make([]Network, len(raws))
	p.nets = map[string]*netState{}
	for i := range raws {
		r, n := &raws[i], &nets[i]
		table := fmt.Sprintf("network[%d]", i)
		s := p.scope(table, fmt.Sprintf("network #%d", i+1))
		name, ok := s.required("name", r.Name)
		if ok {
			s = p.scope(table, fmt.Sprintf("network %q", name))
			if !networkName.MatchString(name) || len(name) > 15 {
				s.errorf("name", "name must be 1-15 characters of a-z, 0-9, '_' and '-'")
			} else if name == rule.Uplink {
				s.errorf("name", `name "uplink" is reserved for the uplink`)
			}
		}
		*n = Network{
			Name:       name,
			Masquerade: s.boolean("masquerade", r.Masquerade, true),
			Internal:   s.boolean("internal", r.Internal, false),
			Isolate:    s.boolean("isolate", r.Isolate, true),
			DNS:        s.boolean("dns", r.DNS, true),
			MTU:        s.integer("mtu", r.MTU, 1500, 68, 65535),
		}
		ns := &netState{Network: n, s: s, taken: map[netip.Addr]string{}}
		ns.valid = subnet(s, r, n)
		if n.Gateway.IsValid() {
			n.GatewayMAC = derivedMAC(n.Gateway)
		}
		ns.next = n.Subnet.Addr().Next()
		if subnet6(s, r, n) {
			ns.next6 = n.Subnet6.Addr().Next()
		}
		switch {
		case n.Subnet6.IsValid():
			n.Masquerade6 = s.boolean("masquerade6", r.Masquerade6, ula.Contains(n.Subnet6.Addr()))
		case r.Masquerade6 != nil:
			s.errorf("masquerade6", "masquerade6 needs subnet6")
		}
		if first, dup := p.nets[name]; dup {
			s.errorf("name", "duplicate name, first defined at line %d", p.loc.line(first.s.table, "name"))
			continue
		}
		if ok {
			p.nets[name] = ns
			p.netList = append(p.netList, ns)
		}
	}
	for j, b := range p.netList {
		for _, a := range p.netList[:j] {
			if a.valid && b.valid && a.Subnet.Overlaps(b.Subnet) {
				b.s.errorf("subnet", "subnet %s overlaps network %q (%s)", b.Subnet, a.Name, a.Subnet)
			}
		}
		for _, a := range p.netList[:j] {
			if a.Subnet6.IsValid() && b.Subnet6.IsValid() && a.Subnet6.Overlaps(b.Subnet6) {
				b.s.errorf("subnet6", "subnet6 %s overlaps network %q (%s)", b.Subnet6, a.Name, a.Subnet6)
			}
		}
		if up != nil && up.Address.IsValid() && b.valid && up.Address.Overlaps(b.Subnet) {
			s := p.scope("uplink", "uplink")
			s.errorf("address", "address %s overlaps network %q (%s)", up.Address, b.Name, b.Subnet)
		}
		if up != nil && up.Address6.IsValid() && b.Subnet6.IsValid() && up.Address6.Overlaps(b.Subnet6) {
			s := p.scope("uplink", "uplink")
			s.errorf("address6", "address6 %s overlaps network %q (%s)", up.Address6, b.Name, b.Subnet6)
		}
	}
	return nets
}

// subnet sets n's subnet and gateway and reports whether both are valid.
func subnet(s scope, r *rawNetwork, n *Network) bool {
	str, ok := s.required("subnet", r.Subnet)
	if !ok {
		return false
	}
	pfx, err := netip.ParsePrefix(str)
	switch {
	case err != nil || !pfx.Addr().Is4():
		s.errorf("subnet", "subnet %q is not an IPv4 prefix like 172.20.0.0/24", str)
		return false
	case pfx != pfx.Masked():
		s.errorf("subnet", "subnet %s has host bits set: did you mean %s?", pfx, pfx.Masked())
		return false
	}
	if msg := checkBits(pfx); msg != "" {
		s.errorf("subnet", "subnet %s: %s", pfx, msg)
		return false
	}
	n.Subnet = pfx
	gw, ok := s.str("gateway", r.Gateway)
	if !ok {
		n.Gateway = pfx.Addr().Next()
		return r.Gateway == nil
	}
	addr, err := netip.ParseAddr(gw)
	switch {
	case err != nil || !addr.Is4():
		s.errorf("gateway", "gateway %q is not an IPv4 address", gw)
	case !pfx.Contains(addr):
		s.errorf("gateway", "gateway %s is outside subnet %s", addr, pfx)
	case hostAddress(addr, pfx) != "":
		s.errorf("gateway", "gateway %s is %s of subnet %s", addr, hostAddress(addr, pfx), pfx)
	default:
		n.Gateway = addr
		return true
	}
	return false
}

// ula is the IPv6 unique local prefix (RFC 4193); global is the global
// unicast space (RFC 4291).
var (
	ula    = netip.MustParsePrefix("fc00::/7")
	global = netip.MustParsePrefix("2000::/3")
)

// subnet6 sets n's subnet6 and gateway6 when subnet6 is given and reports
// whether both are valid. A subnet6 is a /64 or shorter (SLAAC and most
// IPv6 stacks assume /64 links) of the ULA or global unicast space.
func subnet6(s scope, r *rawNetwork, n *Network) bool {
	str, ok := s.str("subnet6", r.Subnet6)
	if !ok {
		if r.Gateway6 != nil {
			s.errorf("gateway6", "gateway6 needs subnet6")
		}
		return false
	}
	pfx, err := netip.ParsePrefix(str)
	switch {
	case err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6():
		s.errorf("subnet6", "subnet6 %q is not an IPv6 prefix like fd00:20::/64", str)
		return false
	case pfx != pfx.Masked():
		s.errorf("subnet6", "subnet6 %s has host bits set: did you mean %s?", pfx, pfx.Masked())
		return false
	case pfx.Bits() > 64 || pfx.Bits() < 16:
		s.errorf("subnet6", "subnet6 %s: the prefix length must be between /16 and /64", pfx)
		return false
	case !ula.Contains(pfx.Addr()) && !global.Contains(pfx.Addr()):
		s.errorf("subnet6", "subnet6 %s is neither unique local (fc00::/7) nor global unicast (2000::/3)", pfx)
		return false
	}
	n.Subnet6 = pfx
	gw, ok := s.str("gateway6", r.Gateway6)
	if !ok {
		a := pfx.Addr().As16()
		a[15] = 1
		n.Gateway6 = netip.AddrFrom16(a)
		return r.Gateway6 == nil
	}
	addr, err := netip.ParseAddr(gw)
	switch {
	case err != nil || !addr.Is6() || addr.Is4In6() || addr.Zone() != "":
		s.errorf("gateway6", "gateway6 %q is not an IPv6 address", gw)
	case !pfx.Contains(addr):
		s.errorf("gateway6", "gateway6 %s is outside subnet6 %s", addr, pfx)
	case hostAddress(addr, pfx) != "":
		s.errorf("gateway6", "gateway6 %s is %s of subnet6 %s", addr, hostAddress(addr, pfx), pfx)
	default:
		n.Gateway6 = addr
		return true
	}
	n.Subnet6 = netip.Prefix{}
	return false
}

// checkBits limits prefix lengths to what makes a usable IPv4 LAN.
func checkBits(p netip.Prefix) string {
	if p.Bits() < 8 || p.Bits() > 30 {
		return "the prefix length must be between /8 and /30"
	}
	return ""
}

// hostAddress says why addr, inside subnet, cannot be a host's address, or
// returns "": IPv4's network and broadcast addresses, IPv6's subnet-router
// anycast address (RFC 4291 2.6.1).
func hostAddress(addr netip.Addr, subnet netip.Prefix) string {
	if addr.Is6() {
		if addr == subnet.Addr() {
			return "the subnet-router anycast address"
		}
		return ""
	}
	switch addr {
	case subnet.Addr():
		return "the network address"
	case broadcast(subnet):
		return "the broadcast address"
	}
	return ""
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := range a {
		hostBits := min(max(32-p.Bits()-8*(3-i), 0), 8)
		a[i] |= byte(1<<hostBits - 1)
	}
	return netip.AddrFrom4(a)
}

// derivedMAC is Docker's MAC for an IPv4 address: 02:42 and its four bytes.
func derivedMAC(ip netip.Addr) packet.MAC {
	a := ip.As4()
	return packet.MAC{0x02, 0x42, a[0], a[1], a[2], a[3]}
}
