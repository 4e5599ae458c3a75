package control

import (
	"net/http"
	"net/netip"

	"github.com/uswitch-dev/uswitch/arp"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/router"
)

// NeighEntry is one row of GET /v1/neigh: a neighbour of a router port.
type NeighEntry struct {
	Port    string         `json:"dev"`
	Network string         `json:"network,omitempty"`
	IP      netip.Addr     `json:"ip"`
	MAC     *packet.MAC    `json:"lladdr,omitempty"`
	State   arp.State      `json:"state"`
	Age     clock.Duration `json:"age"` // since last confirmed; "1.5s" in JSON
	Queued  int            `json:"queued"`
}

// neigh answers GET /v1/neigh: every router port's ARP and IPv6 neighbour
// caches.
func (h *handler) neigh(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	out := []NeighEntry{}
	for _, p := range h.b.Router().Ports() {
		for _, e := range p.NeighbourEntries() {
			out = append(out, NeighEntry{Port: p.Name, Network: p.Network, IP: netip.MustParseAddr(e.IP), MAC: e.MAC,
				State: e.State, Age: clock.Duration(e.Age), Queued: e.Queue})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// routeTable answers GET /v1/routes: the routing table, longest prefix first.
func (h *handler) routeTable(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	rs := h.b.Router().Routes()
	if rs == nil {
		rs = []router.Route{}
	}
	writeJSON(w, http.StatusOK, rs)
	return nil
}
