package control

import (
	"net/http"
	"strconv"

	"github.com/uswitch-dev/uswitch/datapath"
)

// Tracer is a Backend that can trace a synthetic packet through its
// datapath (*datapath.Datapath is one).
type Tracer interface {
	Trace(q datapath.TraceQuery) (*datapath.TraceResult, error)
}

// traceParams are the query parameters of GET /v1/trace.
var traceParams = []string{"port", "src", "dst", "proto", "sport", "dport", "flags", "len", "ttl", "frame", "reply"}

// trace answers GET /v1/trace?port=P&dst=IP[&src=IP][&proto=tcp|udp|icmp]
// [&sport=N][&dport=N][&flags=syn|ack][&len=N][&ttl=N][&frame=HEX][&reply=1]:
// the steps of the packet through the datapath, run without side effects.
func (h *handler) trace(w http.ResponseWriter, r *http.Request) error {
	tr, ok := h.b.(Tracer)
	if !ok {
		return errorf(http.StatusNotImplemented, "this instance cannot trace")
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
