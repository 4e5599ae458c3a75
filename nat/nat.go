package nat

import (
	"fmt"
	"hash/maphash"
	"net/netip"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
	"github.com/uswitch-dev/uswitch/trace"
)

// Tracker is the connection tracking and NAT of one router: a table, a
// rule set and the hooks the router calls.
type Tracker struct {
	Table *Table
	Rules *Rules
	clock clock.Clock
	seed  maphash.Seed
}

// NewTracker returns a tracker over rules with a table of at most max
// connections.
func NewTracker(rules *Rules, max int, clk clock.Clock) *Tracker {
	return &Tracker{Table: NewTable(max, clk), Rules: rules, clock: clk, seed: maphash.MakeSeed()}
}

// Flow is one packet's passage through the hooks. The router keeps it on
// its stack from Prerouting to Postrouting.
type Flow struct {
	// Partial says the packet's transport checksum is partial (an
	// offloaded frame's): the caller sets it before Prerouting, which
	// keeps it, so translations adjust only its pseudo-header part.
	Partial bool
	// Rec, when set, records the hooks' decisions; with Rec.Dry they
	// change nothing: no connection made or updated, no rule counted.
	Rec *trace.Recorder

	flowState
	// an IPv6 packet's: set by Prerouting6, never read for IPv4 (so
	// Prerouting does not clear them)
	orig6 Tuple6 // its tuple as it arrived
	off6  int    // where its upper-layer header starts
}

// flowState is what each Prerouting starts afresh, in place (assigning a
// literal that reads nothing of the Flow, so no temporary is copied).
type flowState struct {
	meta    Meta
	orig    Tuple // as the packet arrived (an IPv6 packet's ports and protocol)
	conn    *Conn
	dir     Dir
	tracked bool // a connection exists or will be made at Postrouting
	related bool // an ICMP error about conn
	dnat    bool // a new connection whose destination was translated
}

// Prerouting is the first hook: it finds the packet's connection (or its
// related connection, for an ICMP error), updates its state, runs the
// prerouting rules, and translates the destination: the DNAT of a new
// connection, or what an existing connection's NAT says. It returns the
// verdict (Accept, Drop or Reject).
func (t *Tracker) Prerouting(f *Flow, ip packet.IPv4, in string) Verdict {
	f.flowState = flowState{meta: Meta{In: in, Size: len(ip)}}
	ok := read4(&f.meta.T, ip)
	if !ok {
		f.orig = f.meta.T
		return t.untracked(f, ip.Protocol() == packet.ProtoICMP && t.relatedIn(f, ip))
	}
	c, d, found := t.Table.lookup(keyOf(ip, &f.meta.T), nil)
	if !found && f.Rec != nil {
		c, d, found = pending(f.Rec, keyOf(ip, &f.meta.T), nil)
	}
	return t.prerouting(f, ip, c, d, found)
}

// prerouting is the rest of Prerouting and Prerouting6 (f.meta.V6) once
// the packet ip was read and its connection looked up: c, in direction d,
// when found. For a packet of a connection it updates the connection's
// state, runs the prerouting rules and translates the destination the
// connection says, calling rewrite or rewrite6 itself: one call deep, as
// the hot path was when each family had its own copy.
func (t *Tracker) prerouting(f *Flow, ip []byte, c *Conn, d Dir, found bool) Verdict {
	l4 := f.l4(ip)
	if !found {
		return t.opening(f, ip, l4)
	}
	st := t.update(c, d, l4, f.meta.Size, f.Rec != nil && f.Rec.Dry)
	if st == stateReopen {
		// a SYN reopening the tuple: the packet opens a new connection
		return t.opening(f, ip, l4)
	}
	f.found(c, d, st)
	if f.Rec != nil {
		f.traceFound()
	}
	v := t.Rules.filterVerdict(Prerouting, &f.meta, f.Rec)
	switch {
	case v.Action != Accept || c.nat == 0:
	case f.meta.V6:
		tg := c.target6(d)
		if f.Rec != nil {
			f.traceDst(netip.AddrFrom16(f.meta.Dst6), netip.AddrFrom16(tg.Dst), tg.Dport)
		}
		rewrite6(ip, tg.Proto, l4, true, tg.Dst, tg.Dport, f.Partial)
		// one by one, as in Prerouting6
		f.meta.Dst6 = tg.Dst
		f.meta.T.Dport = tg.Dport
	default:
		tg := c.target(d)
		if f.Rec != nil {
			f.traceDst(netip.AddrFrom4(f.meta.T.Dst), netip.AddrFrom4(tg.Dst), tg.Dport)
		}
		rewrite(ip, l4, true, tg.Dst, tg.Dport, f.Partial)
		f.meta.T.Dst, f.meta.T.Dport = tg.Dst, tg.Dport
	}
	return v
}

// l4 is the transport header of the packet ip prerouting read: IPv4's
// payload, or IPv6's upper-layer header past its extension headers.
func (f *Flow) l4(ip []byte) []byte {
	if f.meta.V6 {
		return f.upper6(ip)
	}
	return packet.IPv4(ip).Payload()
}

// opening is prerouting for a packet ip (transport header l4) with no
// connection: the prerouting rules as NEW or INVALID (first), then the
// DNAT rule of a new connection.
func (t *Tracker) opening(f *Flow, ip, l4 []byte) Verdict {
	f.orig = f.meta.T
	if v := t.first(f, l4); v.Action != Accept || !f.tracked {
		return v
	}
	if r := t.Rules.natRule(Prerouting, &f.meta, f.Rec); r != nil && r.Action == DNAT {
		f.dnatTo(ip, l4, r)
		f.meta.State |= stateDNAT
		f.dnat = true
	}
	return accept
}

// dnatTo gives ip (transport header l4), the first packet of a new
// connection, the destination of its DNAT rule r: r's address (for IPv6,
// none keeps the packet's) and port (ports only: an echo keeps its id).
func (f *Flow) dnatTo(ip, l4 []byte, r *Rule) {
	dport := f.meta.T.Dport
	if r.ToPort != 0 && hasPorts(f.meta.T.Proto) {
		dport = r.ToPort
	}
	if f.meta.V6 {
		dst := r.toAddr6
		if dst == ([16]byte{}) {
			dst = f.meta.Dst6
		}
		f.traceDNAT(r, netip.AddrPortFrom(netip.AddrFrom16(f.meta.Dst6), f.meta.T.Dport), netip.AddrPortFrom(netip.AddrFrom16(dst), dport))
		rewrite6(ip, f.meta.T.Proto, l4, true, dst, dport, f.Partial)
		f.meta.Dst6, f.meta.T.Dport = dst, dport
		return
	}
	tg := f.meta.T
	tg.Dst, tg.Dport = r.toAddr, dport
	f.traceDNAT(r, netip.AddrPortFrom(netip.AddrFrom4(f.meta.T.Dst), f.meta.T.Dport), netip.AddrPortFrom(netip.AddrFrom4(tg.Dst), tg.Dport))
	rewrite(ip, l4, true, tg.Dst, tg.Dport, f.Partial)
	f.meta.T = tg
}

// traceDst records a connection's translation of the destination to
// (to, dport), when it changes it.
func (f *Flow) traceDst(dst, to netip.Addr, dport uint16) {
	if dst != to || dport != f.meta.T.Dport {
		f.Rec.Addf(trace.NAT, "prerouting", "destination %v -> %v, as the connection says",
			netip.AddrPortFrom(dst, f.meta.T.Dport), netip.AddrPortFrom(to, dport))
	}
}

// untracked ends prerouting for a packet conntrack cannot track by itself:
// INVALID, or RELATED when it is an error about a tracked connection.
func (t *Tracker) untracked(f *Flow, related bool) Verdict {
	f.meta.State = StateInvalid
	if related {
		f.meta.State = StateRelated
	}
	if f.Rec != nil {
		f.Rec.Addf(trace.Conntrack, "conntrack", "%s: not trackable by itself", stateText(f.meta.State))
	}
	return t.Rules.filterVerdict(Prerouting, &f.meta, f.Rec)
}

// found records that the packet belongs to connection c, in direction d,
// with state st (update's word). Small enough to be inlined: the trace
// (traceFound) is the caller's.
func (f *Flow) found(c *Conn, d Dir, st uint8) {
	f.conn, f.dir, f.tracked = c, d, true
	f.meta.State = st
	if c.nat&natDst != 0 {
		f.meta.State |= stateDNAT
	}
}

// traceFound records the connection found.
func (f *Flow) traceFound() {
	o, r := f.conn.views()
	f.Rec.Addf(trace.Conntrack, "conntrack", "%s, %s direction of [%v] -> [%v]", stateText(f.meta.State&^stateDNAT), dirName(f.dir), o, r)
}

// first runs the prerouting rules for a packet with no connection
// (transport header l4): NEW when it may open one, INVALID when it
// cannot (a TCP segment other than a SYN or an ACK, an echo reply).
func (t *Tracker) first(f *Flow, l4 []byte) Verdict {
	f.meta.State = StateNew
	f.tracked = true
	switch f.orig.Proto {
	case packet.ProtoTCP:
		if len(l4) < 14 || (classify(l4[13]) != tcpSyn && classify(l4[13]) != tcpAck) {
			f.meta.State, f.tracked = StateInvalid, false // not a connection's first segment
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		if p := f.orig.Proto; len(l4) > 0 && (p == packet.ProtoICMP && !f.meta.V6 && l4[0] == packet.ICMPEchoReply ||
			p == packet.ProtoICMPv6 && f.meta.V6 && l4[0] == packet.ICMPv6EchoReply) {
			f.meta.State, f.tracked = StateInvalid, false // a reply to no request, as Linux says
		}
	}
	if f.Rec != nil {
		if f.meta.V6 {
			f.Rec.Addf(trace.Conntrack, "conntrack", "%s: no connection of %v", stateText(f.meta.State), f.orig6)
		} else {
			f.Rec.Addf(trace.Conntrack, "conntrack", "%s: no connection of %v", stateText(f.meta.State), f.orig)
		}
	}
	return t.Rules.filterVerdict(Prerouting, &f.meta, f.Rec)
}

// traceDNAT records the DNAT rule r translating a new connection's
// destination from from to to.
func (f *Flow) traceDNAT(r *Rule, from, to netip.AddrPort) {
	if f.Rec != nil {
		f.Rec.Add(trace.Step{Kind: trace.NAT, Where: "prerouting", Rule: r.Comment, Text: fmt.Sprintf("dnat: destination %v -> %v", from, to)})
	}
}

// Filter runs a filter hook (input, forward or output) for the packet,
// of either family (after Prerouting or Prerouting6).
func (t *Tracker) Filter(f *Flow, h Hook, out string) Verdict {
	f.meta.Out = out
	return t.Rules.filterVerdict(h, &f.meta, f.Rec)
}

// Postrouting is the last hook: it runs the postrouting rules, translates
// the source (the SNAT of a connection, or the masquerade decided now for a
// new one), and makes the connection of a new flow. outAddr is the egress
// port's address, for masquerade. A full table refuses the new connection
// with Drop.
func (t *Tracker) Postrouting(f *Flow, ip packet.IPv4, out string, outAddr [4]byte) Verdict {
	return t.postrouting(f, ip, out, &outAddr, nil)
}

// postrouting is Postrouting and Postrouting6 (f.meta.V6): the egress
// port's address is out4 or out6, of the packet's family. For a packet of
// a connection it translates the source as Prerouting translates the
// destination, calling rewrite or rewrite6 itself.
func (t *Tracker) postrouting(f *Flow, ip []byte, out string, out4 *[4]byte, out6 *[16]byte) Verdict {
	if v := t.Filter(f, Postrouting, out); v.Action != Accept || !f.tracked {
		return v
	}
	c := f.conn
	switch {
	case c == nil:
		return t.open(f, ip, out4, out6)
	case c.nat == 0:
	case f.related && f.meta.V6:
		relatedOut6(ip, f.upper6(ip), c, f.dir)
	case f.related:
		relatedOut(ip, c, f.dir)
	case f.meta.V6:
		tg := c.target6(f.dir)
		rewrite6(ip, tg.Proto, f.upper6(ip), false, tg.Src, tg.Sport, f.Partial)
	default:
		tg := c.target(f.dir)
		rewrite(ip, packet.IPv4(ip).Payload(), false, tg.Src, tg.Sport, f.Partial)
	}
	return accept
}

// open makes the connection of a new flow's first packet ip: its source
// NAT decided (masquerade to the egress address out4 or out6), committed,
// and the packet's source translated when it says so.
func (t *Tracker) open(f *Flow, ip []byte, out4 *[4]byte, out6 *[16]byte) Verdict {
	l4, r := f.l4(ip), t.snatRule(f)
	cur := &f.meta.T
	var c *Conn
	if f.meta.V6 {
		src, sport, nat := sourceNAT(r, f.meta.Src6, *out6, r.target6(), cur)
		c = newConn6(f.orig6)
		c.nat = nat
		c.six.reply = Tuple6{Src: f.meta.Dst6, Dst: src, Sport: cur.Dport, Dport: sport, Proto: cur.Proto}
		c.reply = c.six.reply.ports()
	} else {
		src, sport, nat := sourceNAT(r, cur.Src, *out4, r.target4(), cur)
		c = &Conn{orig: f.orig, nat: nat}
		c.reply = Tuple{Src: cur.Dst, Dst: src, Sport: cur.Dport, Dport: sport, Proto: cur.Proto}
	}
	if v := t.commit(f, c, l4); v.Action != Accept || c.nat&natSrc == 0 {
		return v
	}
	if f.meta.V6 {
		rewrite6(ip, cur.Proto, l4, false, c.six.reply.Dst, c.six.reply.Dport, f.Partial)
	} else {
		rewrite(ip, l4, false, c.reply.Dst, c.reply.Dport, f.Partial)
	}
	return accept
}

// snatRule finds the source NAT rule of a new connection (nil: none).
func (t *Tracker) snatRule(f *Flow) *Rule {
	r := t.Rules.natRule(Postrouting, &f.meta, f.Rec)
	if r != nil && f.Rec != nil {
		f.Rec.Add(trace.Step{Kind: trace.NAT, Where: "postrouting", Rule: r.Comment, Text: "source translation: " + r.Action.String()})
	}
	return r
}

// sourceNAT is the source address and port a new connection gets from
// its source NAT rule r (nil: none) given its source src, the egress
// address out (masquerade) and r's target to (SNAT; zero keeps the
// address), and natSrc when they are not its own; cur holds its ports and
// protocol.
func sourceNAT[A [4]byte | [16]byte](r *Rule, src, out, to A, cur *Tuple) (A, uint16, uint8) {
	nsrc, sport := src, cur.Sport
	switch {
	case r == nil:
	case r.Action == Masquerade:
		nsrc = out
	case r.Action == SNAT:
		var none A
		if to != none {
			nsrc = to
		}
		if r.ToPort != 0 && hasPorts(cur.Proto) {
			sport = r.ToPort
		}
	}
	if nsrc != src || sport != cur.Sport {
		return nsrc, sport, natSrc
	}
	return nsrc, sport, 0
}

// commit makes the new connection c (its tuples and NAT decided) of a
// flow whose first packet's transport header is l4: its source port made
// unique when its source is translated, its state, its counters. A full
// table refuses it with Drop; a dry trace keeps it in its recorder.
func (t *Tracker) commit(f *Flow, c *Conn, l4 []byte) Verdict {
	if f.dnat {
		c.nat |= natDst
	}
	if c.nat&natSrc != 0 && !t.freePort(c) {
		t.Table.InsertFailed.Add(1)
		return clash
	}
	if c.orig.Proto == packet.ProtoTCP {
		if classify(packet.TCP(l4).Flags()) == tcpSyn {
			c.tcp.Store(uint32(TCPSynSent))
		} else {
			c.tcp.Store(uint32(TCPEstablished)) // picked up mid-stream, like nf_conntrack_tcp_loose
		}
	}
	c.packets[Original].Store(1)
	c.bytes[Original].Store(uint64(f.meta.Size))
	if f.Rec != nil {
		o, r := c.views()
		if c.nat&natSrc != 0 {
			f.Rec.Addf(trace.NAT, "postrouting", "source %v -> %v", netip.AddrPortFrom(r.Src, r.Sport), netip.AddrPortFrom(r.Dst, r.Dport))
		}
		f.Rec.Addf(trace.Conntrack, "conntrack", "new connection [%v] -> reply [%v]", o, r)
	}
	if f.Rec != nil && f.Rec.Dry {
		c.setTargets()
		f.Rec.Conn = c // what a dry trace of the reply finds (PendingConn)
	} else if !t.Table.insert(c) {
		return full
	}
	return accept
}

var (
	full  = Verdict{Action: Drop, Reason: stats.ConntrackFull}
	clash = Verdict{Action: Drop, Reason: stats.CtClash}
)

// freePort makes c's reply tuple unique: its destination port (the
// translated source port) is kept when no connection uses it, else
// another is picked from 1024-65535 starting at a hash of the tuple (for
// ICMP, the echo id). A protocol without ports cannot be made unique.
func (t *Tracker) freePort(c *Conn) bool {
	taken := func() bool {
		if c.six != nil {
			_, _, ok := t.Table.Lookup6(&c.six.reply)
			return ok
		}
		return t.Table.taken(c.reply)
	}
	if !taken() {
		return true
	}
	reply := &c.reply
	echo := reply.Proto == packet.ProtoICMP || reply.Proto == packet.ProtoICMPv6
	if !hasPorts(reply.Proto) && !echo {
		return false // nothing but the addresses tells its packets apart
	}
	const lo, n = 1024, 65536 - 1024
	h := maphash.Comparable(t.seed, *reply)
	if c.six != nil {
		h = maphash.Comparable(t.seed, c.six.reply)
	}
	start := uint32(h)
	for i := range uint32(n) {
		p := uint16(lo + (start+i)%n)
		reply.Dport = p
		if echo {
			reply.Sport = p
		}
		if c.six != nil {
			c.six.reply.Sport, c.six.reply.Dport = reply.Sport, reply.Dport
		}
		if !taken() {
			return true
		}
		if i >= 4096 {
			break // the port space of this destination is crowded: give up
		}
	}
	return false
}

// update moves a connection's state for a packet in direction d and
// returns the packet's state bits for rules, or stateReopen for a SYN that
// replaces the connection.
func (t *Tracker) update(c *Conn, d Dir, l4 []byte, size int, dry bool) uint8 {
	if c.orig.Proto == packet.ProtoTCP {
		if len(l4) < 14 {
			return StateInvalid
		}
		cur := TCPState(c.tcp.Load())
		class := classify(l4[13])
		if class == tcpSyn && d == Original && (cur == TCPTimeWait || cur == TCPClose) {
			// A SYN on a connection in TIME_WAIT or CLOSE: Linux takes it
			// as the peer reusing the tuple (RFC 1122 4.2.2.13), removes
			// the old connection and tracks the packet as a new one's
			// first, with its own NAT decision and counters.
			if !dry && t.Table.remove(c) {
				t.Table.Reopened.Add(1)
			}
			return stateReopen
		}
		next := tcpTransitions[d][class][cur]
		switch next {
		case tcpInvalid:
			return StateInvalid
		case tcpIgnore:
		default:
			if dry {
				break
			}
			if next != cur {
				c.tcp.CompareAndSwap(uint32(cur), uint32(next))
			}
			// Linux's tcp_packet: assured once a reply was seen and an
			// ACK completes the handshake (SYN_RECV -> ESTABLISHED), or
			// a picked-up connection is answered; a SYN_RECV entry is
			// not, so early drop can take it.
			if next == TCPEstablished && (cur == TCPSynRecv || cur == TCPEstablished) &&
				(d == Reply || c.replied.Load()) && !c.assured.Load() {
				c.assured.Store(true)
			}
		}
	} else if d == Reply && !c.assured.Load() && !dry {
		c.assured.Store(true)
	}
	if dry {
		if d == Reply || c.replied.Load() {
			return StateEstablished
		}
		return StateNew
	}
	if d == Reply && !c.replied.Load() {
		c.replied.Store(true)
	}
	if exp := t.clock.Now() + int64(c.timeout()); c.expires.Load() != exp {
		c.expires.Store(exp)
	}
	c.packets[d].Add(1)
	c.bytes[d].Add(uint64(size))
	if d == Reply || c.replied.Load() {
		return StateEstablished
	}
	return StateNew
}

// relatedIn recognises an ICMP error quoting a packet of a tracked
// connection and translates what prerouting translates: the outer
// destination and the quoted packet's source.
func (t *Tracker) relatedIn(f *Flow, ip packet.IPv4) bool {
	inner, it, ok := quoted(ip)
	if !ok {
		return false
	}
	c, d, found := t.Table.Lookup(it.Reverse())
	if !f.relate(c, d, found) || c.nat == 0 {
		return found
	}
	tg := c.target(d)
	ip.SetDstWithChecksumUpdate(tg.Dst)
	rewrite(inner, inner[inner.HeaderLen():], false, tg.Dst, tg.Dport, false)
	fixICMPSum(ip)
	f.meta.T.Dst = tg.Dst
	return true
}

// relate makes the flow's packet, an ICMP error, RELATED to connection c
// (direction d) when found, and reports found.
func (f *Flow) relate(c *Conn, d Dir, found bool) bool {
	if found {
		f.conn, f.dir, f.related, f.tracked = c, d, true, true
	}
	return found
}

// relatedOut translates what postrouting translates in a related ICMP
// error travelling in direction d of c: the quoted packet's destination,
// and the outer source when c translates sources in that direction. Like
// Linux, an error from a router on the way (time exceeded, frag needed)
// otherwise keeps its sender: it is not the connection's peer.
func relatedOut(ip packet.IPv4, c *Conn, d Dir) {
	inner, _, ok := quoted(ip)
	if !ok {
		return
	}
	tg, from := c.target(d), c.orig
	if d == Reply {
		from = c.reply
	}
	if tg.Src != from.Src {
		ip.SetSrcWithChecksumUpdate(tg.Src)
	}
	rewrite(inner, inner[inner.HeaderLen():], true, tg.Src, tg.Sport, false)
	fixICMPSum(ip)
}

// quoted returns the packet quoted by an ICMP error (its header and at
// least 8 bytes of what follows) and its tuple.
func quoted(ip packet.IPv4) (inner packet.IPv4, it Tuple, ok bool) {
	m := packet.ICMP(ip.Payload())
	if !m.Valid() || !m.IsError() {
		return nil, it, false
	}
	inner = packet.IPv4(m[packet.ICMPHeaderLen:])
	if !inner.HeaderFits() || len(inner) < inner.HeaderLen()+8 {
		return nil, it, false
	}
	it = Tuple{Src: inner.Src(), Dst: inner.Dst(), Proto: inner.Protocol()}
	if it.Proto == packet.ProtoICMPv6 {
		return nil, it, false
	}
	it.Sport, it.Dport, ok = quotedPorts(it.Proto, inner[inner.HeaderLen():])
	return inner, it, ok
}

// fixICMPSum recomputes an ICMP error's checksum after its quote changed
// (errors are at most 576 bytes: the slow path can afford it).
func fixICMPSum(ip packet.IPv4) { packet.ICMP(ip.Payload()).SetChecksum() }

// Output runs the output hook for a packet the router itself sends (an
// echo reply, an ICMP error, a reset) out of the port named out. An ICMP
// error quotes the packet as prerouting left it: when that packet belongs
// to a translated connection, the quote is translated back to what its
// sender knows, as postrouting does for errors that pass through.
func (t *Tracker) Output(ip packet.IPv4, out string) Verdict {
	var tup Tuple
	ok := read4(&tup, ip)
	m := Meta{T: tup, Out: out, Size: len(ip), State: StateNew}
	if !ok && tup.Proto == packet.ProtoICMP {
		if _, it, ok := quoted(ip); ok {
			if c, d, found := t.Table.Lookup(it.Reverse()); found {
				m.State = StateRelated
				if c.nat != 0 {
					relatedOut(ip, c, d)
				}
			}
		}
	}
	return t.Rules.filterVerdict(Output, &m, nil)
}
