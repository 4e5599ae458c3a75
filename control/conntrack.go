package control

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

// maxListings bounds the listings (of connections and of the FDB) served
// at once; more are answered 429. A variable so that tests can change it.
var maxListings = 4

// list answers a listing: it takes a listing's place (429 when
// maxListings run), streams the JSON array that each adds to, and gives
// the place back. what names the listing in the log of a broken answer.
func (h *handler) list(w http.ResponseWriter, what string, each func(*jsonArray) error) error {
	select {
	case h.listings <- struct{}{}:
		defer func() { <-h.listings }()
	default:
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusTooManyRequests, "%d listings are under way: try again", cap(h.listings))
	}
	a := newJSONArray(w)
	if err := a.close(each(a)); err != nil {
		slog.Debug("control API: writing "+what, "err", err)
	}
	return nil
}

// jsonArray streams a 200 answer of a JSON array, element by element,
// indented as writeJSON indents a whole slice, through a bounded buffer.
type jsonArray struct {
	bw  *bufio.Writer
	sep string
}

func newJSONArray(w http.ResponseWriter) *jsonArray {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	return &jsonArray{bw: bufio.NewWriterSize(w, 32<<10), sep: "[\n  "}
}

// add writes one element.
func (a *jsonArray) add(v any) error {
	b, err := json.MarshalIndent(v, "  ", "  ")
	if err != nil {
		return err
	}
	return a.addRaw(b)
}

// addRaw writes one element that b holds as add would have written it.
func (a *jsonArray) addRaw(b []byte) error {
	a.bw.WriteString(a.sep)
	a.sep = ",\n  "
	_, err := a.bw.Write(b)
	return err
}

// close ends the array and flushes it unless err (from the listing)
// stopped it: a broken answer is then cut short, not closed as complete.
// It returns err, or the flush's error.
func (a *jsonArray) close(err error) error {
	if err != nil {
		return err
	}
	if a.sep == "[\n  " {
		a.bw.WriteString("[]\n")
	} else {
		a.bw.WriteString("\n]\n")
	}
	return a.bw.Flush()
}

// conntrack answers GET /v1/conntrack: the live connections ([]nat.Entry),
// in no particular order, streamed entry by entry so that a listing costs
// memory for a part of the table, not for all of it. The query filters on
// the server side, as conntrack -L's options do: family (ipv4, ipv6),
// proto (tcp, udp, icmp,
// icmpv6), src and dst (the original direction's addresses, IPv4 or
// IPv6), sport and dport (its
// ports), state (a TCP state, such as ESTABLISHED). At most maxListings
// run at once.
func (h *handler) conntrack(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "family", "proto", "src", "dst", "sport", "dport", "state")
	if err != nil {
		return err
	}
	f, err := conntrackFilter(q)
	if err != nil {
		return err
	}
	return h.list(w, "the connection table", func(a *jsonArray) error {
		if t := h.b.Tracker(); t != nil {
			return t.Table.Each(f, func(e *nat.Entry) error { return a.add(e) })
		}
		return nil
	})
}

// conntrackFilter reads /v1/conntrack's query into a filter.
func conntrackFilter(q url.Values) (nat.Filter, error) {
	var f nat.Filter
	if q.Has("family") {
		switch fam := q.Get("family"); fam {
		case "ipv4", "ipv6":
			f.Family = fam
		default:
			return f, errorf(http.StatusBadRequest, "query parameter family=%q: want ipv4 or ipv6", fam)
		}
	}
	if q.Has("proto") {
		switch p := q.Get("proto"); p {
		case "tcp":
			f.Proto = packet.ProtoTCP
		case "udp":
			f.Proto = packet.ProtoUDP
		case "icmp":
			f.Proto = packet.ProtoICMP
		case "icmpv6":
			f.Proto = packet.ProtoICMPv6
		default:
			return f, errorf(http.StatusBadRequest, "query parameter proto=%q: want tcp, udp, icmp or icmpv6", p)
		}
	}
	for _, a := range []struct {
		name string
		to   *netip.Addr
	}{{"src", &f.Src}, {"dst", &f.Dst}} {
		if !q.Has(a.name) {
			continue
		}
		v, err := netip.ParseAddr(q.Get(a.name))
		if err != nil || v.Zone() != "" {
			return f, errorf(http.StatusBadRequest, "query parameter %s=%q: not an IPv4 or IPv6 address", a.name, q.Get(a.name))
		}
		*a.to = v
	}
	for _, p := range []struct {
		name string
		to   *uint16
	}{{"sport", &f.Sport}, {"dport", &f.Dport}} {
		if !q.Has(p.name) {
			continue
		}
		n, err := strconv.ParseUint(q.Get(p.name), 10, 16)
		if err != nil || n == 0 {
			return f, errorf(http.StatusBadRequest, "query parameter %s=%q: not a port (1-65535)", p.name, q.Get(p.name))
		}
		*p.to = uint16(n)
	}
	if q.Has("state") {
		st := strings.ToUpper(q.Get("state"))
		var names []string
		for i := nat.TCPState(0); i.String() != "?"; i++ {
			names = append(names, i.String())
		}
		if !slices.Contains(names, st) {
			return f, errorf(http.StatusBadRequest, "query parameter state=%q: want a TCP state (%s)", q.Get("state"), strings.Join(names, ", "))
		}
		f.State = st
	}
	return f, nil
}

// rules answers GET /v1/rules: the compiled rule set with its counters
// ([]rule.Listed), per hook in netfilter's order, each hook's filter rules
// before its NAT rules.
func (h *handler) rules(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	out := []rule.Listed{}
	if t := h.b.Tracker(); t != nil && t.Rules != nil {
		out = t.Rules.List()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
