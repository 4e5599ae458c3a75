package datapath

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
	"github.com/uswitch-dev/uswitch/trace"
)

// TraceQuery is what `uswitch trace` asks: a packet as if Port had sent it.
type TraceQuery struct {
	Port  string `json:"port"`            // the ingress: an endpoint's port, or rule.Uplink
	Src   string `json:"src,omitempty"`   // default: the port's endpoint's address
	Dst   string `json:"dst,omitempty"`   // required unless Frame
	Proto string `json:"proto,omitempty"` // tcp, udp or icmp (default)
	Sport uint16 `json:"sport,omitempty"` // default 40000 (the echo id for icmp)
	Dport uint16 `json:"dport,omitempty"` // default 80 for tcp, 53 for udp
	Flags string `json:"flags,omitempty"` // "syn" (default for tcp) or "ack"
	Len   int    `json:"len,omitempty"`   // the IP length (default: headers only)
	TTL   uint8  `json:"ttl,omitempty"`   // default 64
	Frame string `json:"frame,omitempty"` // an exact Ethernet frame, in hex
	Reply bool   `json:"reply,omitempty"` // trace the answer too
}

// TraceResult is a traced frame's steps and verdict, and with Reply that of
// its answer.
type TraceResult struct {
	Steps   []trace.Step  `json:"steps"`
	Verdict trace.Verdict `json:"verdict"`
	Reply   *TraceResult  `json:"reply,omitempty"`
	// ReplyError says why a reply asked for was not traced.
	ReplyError string `json:"reply_error,omitempty"`
}

// Trace runs the packet q describes through the datapath's own decision
// code without side effects (nothing learned, counted, tracked, resolved or
// sent) and returns each step and the verdict.
func (d *Datapath) Trace(q TraceQuery) (*TraceResult, error) {
	frame, err := d.traceFrame(q)
	if err != nil {
		return nil, err
	}
	rec := &trace.Recorder{Dry: true}
	if err := d.inject(q.Port, frame, rec); err != nil {
		return nil, err
	}
	res := &TraceResult{Steps: rec.Steps, Verdict: rec.Verdict()}
	if !q.Reply {
		return res, nil
	}
	if res.Verdict.Action != "forward" || len(res.Verdict.Ports) == 0 {
		res.ReplyError = fmt.Sprintf("the packet is not forwarded (%v): there is no reply to trace", res.Verdict)
		return res, nil
	}
	var left []byte
	var where string
	for _, s := range rec.Steps {
		if s.Kind == trace.Egress && s.Frame != "" {
			left, _ = hex.DecodeString(s.Frame)
			where = s.Where
			break
		}
	}
	answer, err := trace.Reply(left)
	if err != nil {
		res.ReplyError = err.Error()
		return res, nil
	}
	port := where[strings.IndexByte(where, '/')+1:]
	rrec := &trace.Recorder{Dry: true, Conn: rec.Conn}
	if err := d.inject(port, answer, rrec); err != nil {
		return nil, err
	}
	res.Reply = &TraceResult{Steps: rrec.Steps, Verdict: rrec.Verdict()}
	return res, nil
}

// inject hands frame to the trace of the switch port named port (an
// endpoint's, or the uplink's).
func (d *Datapath) inject(port string, frame []byte, rec *trace.Recorder) error {
	for _, n := range d.switches() {
		if p := n.sw.Port(port); p != nil && p != n.gwPort {
			n.sw.Trace(p, frame, packet.Offload{}, rec)
			return nil
		}
	}
	if port == rule.Uplink && d.uplink == nil {
		return errors.New("trace: the instance has no uplink")
	}
	return fmt.Errorf("trace: no port %q", port)
}

// traceFrame builds the frame q describes, with the addresses of q's
// port's endpoint where q gives none.
func (d *Datapath) traceFrame(q TraceQuery) ([]byte, error) {
	if q.Frame != "" {
		f, err := hex.DecodeString(strings.ReplaceAll(q.Frame, ":", ""))
		if err != nil {
			return nil, fmt.Errorf("trace: frame: %w", err)
		}
		if len(f) < packet.EthernetHeaderLen {
			return nil, fmt.Errorf("trace: frame: %d bytes, shorter than an Ethernet header", len(f))
		}
		return f, nil
	}
	if q.Port == "" {
		return nil, errors.New("trace: a port is required")
	}
	dst, err := netip.ParseAddr(q.Dst)
	if err != nil || dst.Zone() != "" {
		return nil, fmt.Errorf("trace: destination %q: not an IP address", q.Dst)
	}
	dst = dst.Unmap()
	six := dst.Is6()
	pk := trace.Packet{Dst: dst, Proto: q.Proto, Sport: q.Sport, Dport: q.Dport, Len: q.Len, TTL: q.TTL, SYN: true}
	switch q.Flags {
	case "", "syn":
	case "ack":
		pk.SYN = false
	default:
		return nil, fmt.Errorf("trace: flags %q: want syn or ack", q.Flags)
	}
	if pk.Proto == "" {
		pk.Proto = "icmp"
	}
	if pk.Sport == 0 {
		pk.Sport = 40000
	}
	if pk.Dport == 0 {
		pk.Dport = map[string]uint16{"tcp": 80, "udp": 53}[pk.Proto]
	}
	plan := d.plan.Load()
	if q.Port == rule.Uplink {
		if plan.Uplink == nil || d.uplink == nil {
			return nil, errors.New("trace: the instance has no uplink")
		}
		pk.DstMAC = plan.Uplink.MAC
		pk.SrcMAC = packet.MAC{0x02, 0, 0, 0, 0, 1}
		switch {
		case !six:
			pk.Src = plan.Uplink.HostAddress.Addr()
			if mac, _, ok := d.uplink.gw.Neighbours().Peek(pk.Src.As4()); ok {
				pk.SrcMAC = mac
			}
		case plan.Uplink.HostAddress6.IsValid():
			pk.Src = plan.Uplink.HostAddress6.Addr()
			if mac, _, ok := d.uplink.gw.Neighbours6().Peek(pk.Src.As16()); ok {
				pk.SrcMAC = mac
			}
		}
	} else {
		found := false
		for _, ep := range plan.Endpoints {
			for _, ifc := range ep.Interfaces {
				if ifc.Port != q.Port {
					continue
				}
				found = true
				pk.Src, pk.SrcMAC = ifc.IP, ifc.MAC
				if six {
					pk.Src = ifc.IP6
				}
				pk.DstMAC = d.nextHopMAC(ifc, dst)
			}
		}
		if !found {
			return nil, fmt.Errorf("trace: no endpoint port %q", q.Port)
		}
	}
	if q.Src != "" {
		if pk.Src, err = netip.ParseAddr(q.Src); err != nil || pk.Src.Unmap().Is6() != six {
			return nil, fmt.Errorf("trace: source %q: not an address of the destination's family", q.Src)
		}
		pk.Src = pk.Src.Unmap()
	}
	if !pk.Src.IsValid() {
		return nil, fmt.Errorf("trace: port %q has no IPv6 address to send from: give --src", q.Port)
	}
	return pk.Build()
}

// nextHopMAC is the MAC the endpoint interface from sends a packet for
// dst to: the station's own on its subnet (or subnet6; broadcast when no
// endpoint has that address), else the gateway's.
func (d *Datapath) nextHopMAC(from config.Interface, dst netip.Addr) packet.MAC {
	plan := d.plan.Load()
	n := plan.Network(from.Network)
	prefix, gw := from.Prefix, netip.Addr{}
	if n != nil {
		gw = n.Gateway
	}
	if dst.Is6() {
		prefix, gw = from.Prefix6, from.Gateway6
	}
	if !prefix.Masked().Contains(dst) || dst == gw {
		if n != nil {
			return n.GatewayMAC
		}
	}
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			if ifc.Network == from.Network && (ifc.IP == dst || ifc.IP6 == dst) {
				return ifc.MAC
			}
		}
	}
	return packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
}

// Follow starts the live trace l: the frames from devices that it wants
// are carried through the datapath with a recorder (not dry: they are
// forwarded as ever) and their steps handed to l. The returned function
// stops it. At most trace.MaxLive run at once.
func (d *Datapath) Follow(l *trace.Live) (stop func(), err error) {
	d.liveMu.Lock()
	defer d.liveMu.Unlock()
	var cur []*trace.Live
	if p := d.live.Load(); p != nil {
		cur = *p
	}
	if len(cur) >= trace.MaxLive {
		return nil, trace.ErrTooManyLive
	}
	next := append(slices.Clone(cur), l)
	d.live.Store(&next)
	return func() {
		d.liveMu.Lock()
		defer d.liveMu.Unlock()
		p := d.live.Load()
		if p == nil {
			return
		}
		rest := slices.DeleteFunc(slices.Clone(*p), func(x *trace.Live) bool { return x == l })
		if len(rest) == 0 {
			d.live.Store(nil)
			return
		}
		d.live.Store(&rest)
	}, nil
}

// traceLive carries a frame from port of network (the uplink: "") through
// run with a recorder when a live trace of ls wants it, and reports
// whether it did.
func (d *Datapath) traceLive(ls []*trace.Live, network, port string, frame []byte, run func(*trace.Recorder)) bool {
	var want [trace.MaxLive]*trace.Live
	n := 0
	for _, l := range ls {
		if n < len(want) && l.Wants(network, port, frame) {
			want[n] = l
			n++
		}
	}
	if n == 0 {
		return false
	}
	rec := &trace.Recorder{}
	run(rec)
	for _, l := range want[:n] {
		l.Done(network, port, rec)
	}
	return true
}
