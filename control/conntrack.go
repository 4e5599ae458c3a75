package control

import (
	"net/http"
	"slices"

	"github.com/uswitch-dev/uswitch/nat"
)

// conntrackProtos are the values ?proto= takes on /v1/conntrack.
var conntrackProtos = []string{"tcp", "udp", "icmp"}

// conntrack answers GET /v1/conntrack[?proto=tcp|udp|icmp]: the live
// connections ([]nat.Entry), sorted by original tuple.
func (h *handler) conntrack(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "proto")
	if err != nil {
		return err
	}
	proto := q.Get("proto")
	if q.Has("proto") && !slices.Contains(conntrackProtos, proto) {
		return errorf(http.StatusBadRequest, "query parameter proto=%q: want tcp, udp or icmp", proto)
	}
	out := []nat.Entry{}
	if t := h.b.Tracker(); t != nil {
		for _, e := range t.Table.Entries() {
			if proto == "" || e.Proto == proto {
				out = append(out, e)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// rules answers GET /v1/rules: the compiled rule set with its counters
// ([]nat.RuleRow), per hook in netfilter's order, each hook's filter rules
// before its NAT rules.
func (h *handler) rules(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	out := []nat.RuleRow{}
	if t := h.b.Tracker(); t != nil && t.Rules != nil {
		out = append(out, t.Rules.Rows()...)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
