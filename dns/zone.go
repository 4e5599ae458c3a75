package dns

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/config"
)

// zone is what the resolver knows about one network with dns = true: the
// names of its members and their addresses on that network, and the
// reverse mapping of those addresses.
type zone struct {
	network string
	subnet  netip.Prefix
	subnet6 netip.Prefix            // zero when the network is IPv4 only
	gateway netip.Addr              // the network's gateway: the host, as HostName
	hosts   map[string][]netip.Addr // lower-case name → addresses on this network
	ptr     map[netip.Addr]string   // address → the owning endpoint's name
}

// buildZone collects the names visible on network n: each endpoint with an
// interface on n by its name and aliases, then each container-mode endpoint
// whose target is on n by its own name (it shares the target's addresses).
// The first owner of a name keeps it.
func buildZone(plan *config.Plan, n config.Network) *zone {
	z := &zone{network: n.Name, subnet: n.Subnet, subnet6: n.Subnet6, gateway: n.Gateway, hosts: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}}
	addrs := map[string][]netip.Addr{} // endpoint name → its addresses on n
	for _, ep := range plan.Endpoints {
		var ips []netip.Addr
		for _, ifc := range ep.Interfaces {
			if ifc.Network == n.Name && ifc.IP.IsValid() {
				ips = append(ips, ifc.IP)
			}
			if ifc.Network == n.Name && ifc.IP6.IsValid() {
				ips = append(ips, ifc.IP6)
			}
		}
		if len(ips) == 0 {
			continue
		}
		addrs[ep.Name] = ips
		z.add(ep.Name, ips)
		for _, al := range ep.Aliases {
			z.add(al, ips)
		}
		for _, ip := range ips {
			if _, taken := z.ptr[ip]; !taken {
				z.ptr[ip] = ep.Name
			}
		}
	}
	for _, ep := range plan.Endpoints {
		if ep.Mode == config.ModeContainer {
			if ips := addrs[ep.Container]; len(ips) > 0 {
				z.add(ep.Name, ips)
			}
		}
	}
	return z
}

func (z *zone) add(name string, ips []netip.Addr) {
	name = strings.ToLower(name)
	if _, taken := z.hosts[name]; !taken {
		z.hosts[name] = ips
	}
}

// lookup finds name (lower case, no trailing dot) in the zone: as an
// endpoint name or alias, or as "<name>.<network>" like Docker. inZone says
// whether the name is under "<network>", so that an unknown one is
// answered NXDOMAIN rather than forwarded.
func (z *zone) lookup(name string) (ips []netip.Addr, inZone bool) {
	if ips, ok := z.hosts[name]; ok {
		return ips, true
	}
	if host, ok := strings.CutSuffix(name, "."+z.network); ok {
		return z.hosts[host], true
	}
	return nil, false
}

// contains reports whether ip is an address of the zone's network.
func (z *zone) contains(ip netip.Addr) bool {
	return z.subnet.Contains(ip) || z.subnet6.IsValid() && z.subnet6.Contains(ip)
}

// reverse parses a PTR query name (lower case, no trailing dot) of the form
// d.c.b.a.in-addr.arpa, or the 32 nibbles of an IPv6 address, last first,
// then ip6.arpa.
func reverse(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		return reverse6(rest)
	}
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 4 {
		return netip.Addr{}, false
	}
	var a [4]byte
	for i, l := range labels {
		if len(l) == 0 || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
			return netip.Addr{}, false
		}
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || n > 255 {
			return netip.Addr{}, false
		}
		a[3-i] = byte(n)
	}
	return netip.AddrFrom4(a), true
}

// reverse6 parses the nibbles of an ip6.arpa name.
func reverse6(rest string) (netip.Addr, bool) {
	labels := strings.Split(rest, ".")
	if len(labels) != 32 {
		return netip.Addr{}, false
	}
	var a [16]byte
	for i, l := range labels {
		n, err := strconv.ParseUint(l, 16, 4)
		if err != nil || len(l) != 1 {
			return netip.Addr{}, false
		}
		pos := 31 - i // nibble index, most significant first
		a[pos/2] |= byte(n) << (4 * (1 - pos%2))
	}
	return netip.AddrFrom16(a), true
}
