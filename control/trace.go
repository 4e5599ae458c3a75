package control

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/rule"
	vswitch "github.com/uswitch-dev/uswitch/switch"
	"github.com/uswitch-dev/uswitch/trace"
)

// Tracer is a Backend that can trace a synthetic packet through its
// datapath, and follow real frames (*datapath.Datapath is one).
type Tracer interface {
	Trace(q datapath.TraceQuery) (*datapath.TraceResult, error)
	Follow(l *trace.Live) (stop func(), err error)
}

// traceParams are the query parameters of GET /v1/trace.
var traceParams = []string{"port", "src", "dst", "proto", "sport", "dport", "flags", "len", "ttl", "frame", "reply"}

// liveParams are those of GET /v1/trace?live=1.
var liveParams = []string{"live", "port", "network", "match", "count"}

// traceLive answers GET /v1/trace?live=1[&port=P][&network=N][&match=EXPR]
// [&count=N]: newline-delimited JSON trace.Events of the real frames that
// match, as they pass, until count events, the client goes away or the
// server shuts down.
func (h *handler) traceLive(w http.ResponseWriter, r *http.Request, tr Tracer) error {
	q, err := query(r, liveParams...)
	if err != nil {
		return err
	}
	f, err := trace.ParseFilter(q.Get("match"))
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	count := uint64(0)
	if q.Has("count") {
		if count, err = strconv.ParseUint(q.Get("count"), 10, 32); err != nil {
			return errorf(http.StatusBadRequest, "query parameter count=%q: want a number of frames, 0 for no limit", q.Get("count"))
		}
	}
	port, network := q.Get("port"), q.Get("network")
	if err := h.checkPort(port, network); err != nil {
		return err
	}
	l := trace.NewLive(port, network, f, 0)
	stop, err := tr.Follow(l)
	if errors.Is(err, trace.ErrTooManyLive) {
		return errorf(http.StatusServiceUnavailable, "%d live traces already run", trace.MaxLive)
	} else if err != nil {
		return err
	}
	defer stop()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}
	enc := json.NewEncoder(w)
	for n := uint64(0); count == 0 || n < count; n++ {
		select {
		case ev := <-l.Events:
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return nil // client gone
			}
		case <-r.Context().Done():
			return nil
		}
	}
	return nil
}

// checkPort checks that port (if given) and network (if given) exist and
// that the port is on the network.
func (h *handler) checkPort(port, network string) error {
	if network != "" && network != rule.Uplink && !slices.ContainsFunc(h.b.Networks(), func(sw *vswitch.Switch) bool { return sw.Name() == network }) {
		return errorf(http.StatusNotFound, "no network %q", network)
	}
	if port == "" {
		return nil
	}
	for _, p := range h.b.Ports() {
		if p.Name == port {
			if network != "" && p.Network != network && !(network == rule.Uplink && p.Network == "") {
				return errorf(http.StatusNotFound, "port %q is not on network %q", port, network)
			}
			return nil
		}
	}
	return errorf(http.StatusNotFound, "no port %q", port)
}

// trace answers GET /v1/trace?port=P&dst=IP[&src=IP][&proto=tcp|udp|icmp]
// [&sport=N][&dport=N][&flags=syn|ack][&len=N][&ttl=N][&frame=HEX][&reply=1]:
// the steps of the packet through the datapath, run without side effects.
func (h *handler) trace(w http.ResponseWriter, r *http.Request) error {
	tr, ok := h.b.(Tracer)
	if !ok {
		return errorf(http.StatusNotImplemented, "this instance cannot trace")
	}
	if r.URL.Query().Has("live") {
		return h.traceLive(w, r, tr)
	}
	q, err := query(r, traceParams...)
	if err != nil {
		return err
	}
	tq := datapath.TraceQuery{Port: q.Get("port"), Src: q.Get("src"), Dst: q.Get("dst"), Proto: q.Get("proto"),
		Flags: q.Get("flags"), Frame: q.Get("frame")}
	for _, n := range []struct {
		name string
		bits int
		set  func(uint64)
	}{
		{"sport", 16, func(v uint64) { tq.Sport = uint16(v) }},
		{"dport", 16, func(v uint64) { tq.Dport = uint16(v) }},
		{"len", 17, func(v uint64) { tq.Len = int(v) }},
		{"ttl", 8, func(v uint64) { tq.TTL = uint8(v) }},
	} {
		if !q.Has(n.name) {
			continue
		}
		v, err := strconv.ParseUint(q.Get(n.name), 10, n.bits)
		if err != nil {
			return errorf(http.StatusBadRequest, "query parameter %s=%q: not a number in range", n.name, q.Get(n.name))
		}
		n.set(v)
	}
	if tq.Reply, err = boolParam(q, "reply"); err != nil {
		return err
	}
	res, err := tr.Trace(tq)
	if err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
