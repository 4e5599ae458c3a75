package router

import (
	"net/netip"
	"sort"

	"github.com/uswitch-dev/uswitch/packet"
)

type route struct {
	prefix netip.Prefix
	port   *Port
	gw     [4]byte
	hasGW  bool
	// precomputed for lookup
	net, mask uint32
}

// table is the routing table: routes sorted longest prefix first, searched
// linearly (a router here has a handful of routes), without allocation.
type table struct{ routes []route }

func (t *table) add(r route) {
	bits := r.prefix.Bits()
	r.mask = ^uint32(0) << (32 - bits)
	if bits == 0 {
		r.mask = 0
	}
	a := r.prefix.Addr().As4()
	r.net = packet.AddrBits(a) & r.mask
	t.routes = append(t.routes, r)
	sort.SliceStable(t.routes, func(i, j int) bool { return t.routes[i].prefix.Bits() > t.routes[j].prefix.Bits() })
}

// lookup returns the egress port and next hop for dst.
func (t *table) lookup(dst [4]byte) (*Port, [4]byte, bool) {
	d := packet.AddrBits(dst)
	for i := range t.routes {
		r := &t.routes[i]
		if d&r.mask == r.net {
			if r.hasGW {
				return r.port, r.gw, true
			}
			return r.port, dst, true
		}
	}
	return nil, [4]byte{}, false
}

// Route is a routing table row, as `uswitch routes` shows it.
type Route struct {
	Prefix  netip.Prefix `json:"dst"`
	Via     string       `json:"via,omitempty"`
	Port    string       `json:"dev"`
	Network string       `json:"network,omitempty"`
	Scope   string       `json:"scope"`
	Src     netip.Addr   `json:"prefsrc"`
}

// Routes returns the table, longest prefix first, then the IPv6 table.
func (r *Router) Routes() []Route {
	routes := r.lay.Load().routes.routes
	out := make([]Route, 0, len(routes))
	for _, rt := range routes {
		row := Route{Prefix: rt.prefix, Port: rt.port.Name, Network: rt.port.Network, Scope: "link", Src: rt.port.Addr.Addr()}
		if rt.hasGW {
			row.Via = netip.AddrFrom4(rt.gw).String()
			row.Scope = "global"
		}
		out = append(out, row)
	}
	return r.lay.Load().routes6.rows(out)
}
