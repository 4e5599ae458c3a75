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
	gateway netip.Addr              // the network's gateway: the host, as HostName
	hosts   map[string][]netip.Addr // lower-case name → addresses on this network
	ptr     map[netip.Addr]string   // address → the owning endpoint's name
}

// buildZone collects the names visible on network n: each endpoint with an
// interface on n by its name and aliases, then each container-mode endpoint
// whose target is on n by its own name (it shares the target's addresses).
// The first owner of a name keeps it.
func buildZone(plan *config.Plan, n config.Network) *zone {
	z := &zone{network: n.Name, subnet: n.Subnet, gateway: n.Gateway, hosts: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}}
	addrs := map[string][]netip.Addr{} // endpoint name → its addresses on n
	for _, ep := range plan.Endpoints {
		var ips []netip.Addr
		for _, ifc := range ep.Interfaces {
			if ifc.Network == n.Name && ifc.IP.IsValid() {
				ips = append(ips, ifc.IP)
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

// reverse parses a PTR query name (lower case, no trailing dot) of the form
// d.c.b.a.in-addr.arpa.
func reverse(name string) (netip.Addr, bool) {
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
