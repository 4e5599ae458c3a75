package nat

import (
	"github.com/uswitch-dev/uswitch/packet"
)

// The IPv6 hooks: what Prerouting, Postrouting and Output do for IPv4,
// for an IPv6 packet whose payload length the router checked (LenValid).
// Filter serves both families. Conntrack tracks TCP, UDP and ICMPv6 echo
// as for IPv4, in the same table, and ICMPv6 errors quoting a tracked
// packet are RELATED to its connection and translated with it.
// Fragments come here reassembled (the router runs package defrag first,
// as Linux's nf_defrag_ipv6 before nf_conntrack); an atomic fragment
// (offset 0, no more) is tracked by the transport header it holds. A
// fragment but the first, were one to come, cannot be tracked: INVALID,
// which the forward hook drops.

// Prerouting6 is Prerouting for an IPv6 packet.
func (t *Tracker) Prerouting6(f *Flow, ip packet.IPv6, in string) Verdict {
	f.flowState = flowState{meta: Meta{In: in, Size: len(ip), V6: true}}
	tup := &f.orig6
	l4, off, _, ok := read6(tup, ip)
	f.off6 = off
	// one by one: a multiple assignment copies through temporaries, and
	// ports() would reload both ports, just stored 2 bytes each, as one
	// 4-byte word (a stalled store forward); meta.T's addresses are zero
	f.meta.T.Sport = tup.Sport
	f.meta.T.Dport = tup.Dport
	f.meta.T.Proto = tup.Proto
	f.meta.Src6 = tup.Src
	f.meta.Dst6 = tup.Dst
	if !ok {
		f.orig = f.meta.T
		return t.untracked(f, tup.Proto == packet.ProtoICMPv6 && t.relatedIn6(f, ip, l4))
	}
	c, d, found := t.Table.Lookup6(tup)
	if !found && f.Rec != nil {
		c, d, found = pending(f.Rec, key{}, tup)
	}
	return t.prerouting(f, ip, c, d, found)
}

// Postrouting6 is Postrouting for an IPv6 packet; outAddr is the egress
// port's IPv6 address, for masquerade.
func (t *Tracker) Postrouting6(f *Flow, ip packet.IPv6, out string, outAddr [16]byte) Verdict {
	return t.postrouting(f, ip, out, nil, &outAddr)
}

// upper6 is the upper-layer header of the packet prerouting tracked,
// found by the walk through its extension headers prerouting made.
func (f *Flow) upper6(ip packet.IPv6) []byte {
	return ip[f.off6 : packet.IPv6HeaderLen+int(ip.PayloadLen())]
}

// Output6 is Output for an IPv6 packet the router sends: an ICMPv6 error
// quoting a packet of a translated connection is translated back to what
// its sender knows.
func (t *Tracker) Output6(ip packet.IPv6, out string) Verdict {
	var tup Tuple6
	l4, _, _, ok := read6(&tup, ip)
	m := Meta{T: tup.ports(), Out: out, Size: len(ip), State: StateNew, V6: true, Src6: tup.Src, Dst6: tup.Dst}
	if !ok && tup.Proto == packet.ProtoICMPv6 {
		if _, it, _, ok := quoted6(l4); ok {
			rev := it.Reverse()
			if c, d, found := t.Table.Lookup6(&rev); found {
				m.State = StateRelated
				if c.nat != 0 {
					relatedOut6(ip, l4, c, d)
				}
			}
		}
	}
	return t.Rules.filterVerdict(Output, &m, nil)
}

// rewrite6 sets the destination (dst) or source address of an IPv6
// packet and the port of its transport header l4 (the id of an ICMPv6
// echo, whatever the side), adjusting the transport checksum, which
// covers the addresses through the pseudo header (IPv6 has no header
// checksum). l4 may be cut short, as in the packet an ICMPv6 error
// quotes; partial says its checksum is a partial one (see rewrite).
func rewrite6(ip packet.IPv6, proto uint8, l4 []byte, dst bool, addr [16]byte, port uint16, partial bool) {
	old := ip.Src()
	if dst {
		old = ip.Dst()
		ip.SetDst(addr)
	} else {
		ip.SetSrc(addr)
	}
	fits := sumFits(proto, l4)
	full := fits && !partial
	switch {
	case !fits:
	case proto == packet.ProtoTCP:
		packet.TCP(l4).UpdateChecksumPseudoHeaderAddress6(old, addr, full)
	case proto == packet.ProtoUDP:
		packet.UDP(l4).UpdateChecksumPseudoHeaderAddress6(old, addr, full)
	case proto == packet.ProtoICMPv6:
		packet.ICMPv6(l4).UpdateChecksumPseudoHeaderAddress(old, addr)
	}
	rewritePort(proto, l4, dst, port, full)
}

// quoted6 returns the packet an ICMPv6 error (message m) quotes, its
// header and at least 8 bytes of its transport header, that packet's
// tuple, and the offset of its transport header in it: the walk goes
// through the quote's extension headers (hop-by-hop, routing, destination
// options, a first fragment's header), as Linux's
// nf_conntrack_icmpv6_error does with ipv6_skip_exthdr.
func quoted6(m []byte) (inner packet.IPv6, it Tuple6, l4 int, ok bool) {
	msg := packet.ICMPv6(m)
	if !msg.Valid() || msg.Type() > packet.ICMPv6ParamProblem || msg.Type() == 0 {
		return nil, it, 0, false
	}
	inner = packet.IPv6(m[packet.ICMPHeaderLen:])
	if !inner.Valid() {
		return nil, it, 0, false
	}
	it = Tuple6{Src: inner.Src(), Dst: inner.Dst(), Proto: inner.NextHeader()}
	l4 = packet.IPv6HeaderLen
	if packet.IsIPv6Ext(it.Proto) {
		var walked bool
		if it.Proto, l4, walked = inner.QuotedUpper(); !walked || it.Proto == packet.ProtoFragment6 {
			return nil, it, 0, false
		}
	}
	if it.Proto == packet.ProtoICMP || len(inner) < l4+8 {
		return nil, it, 0, false
	}
	it.Sport, it.Dport, ok = quotedPorts(it.Proto, inner[l4:])
	return inner, it, l4, ok
}

// relatedIn6 is relatedIn for an ICMPv6 error (message l4): the outer
// destination and the quoted packet's source are translated, and the
// message's checksum computed again.
func (t *Tracker) relatedIn6(f *Flow, ip packet.IPv6, l4 []byte) bool {
	inner, it, il4, ok := quoted6(l4)
	if !ok {
		return false
	}
	rev := it.Reverse()
	c, d, found := t.Table.Lookup6(&rev)
	if !f.relate(c, d, found) || c.nat == 0 {
		return found
	}
	tg := c.target6(d)
	ip.SetDst(tg.Dst)
	rewrite6(inner, it.Proto, inner[il4:], false, tg.Dst, tg.Dport, false)
	packet.ICMPv6(l4).SetChecksum(ip.Src(), ip.Dst())
	f.meta.Dst6 = tg.Dst
	return true
}

// relatedOut6 is relatedOut for an ICMPv6 error travelling in direction d
// of c.
func relatedOut6(ip packet.IPv6, l4 []byte, c *Conn, d Dir) {
	inner, it, il4, ok := quoted6(l4)
	if !ok {
		return
	}
	tg, from := c.target6(d), &c.six.orig
	if d == Reply {
		from = &c.six.reply
	}
	if tg.Src != from.Src {
		ip.SetSrc(tg.Src)
	}
	rewrite6(inner, it.Proto, inner[il4:], true, tg.Src, tg.Sport, false)
	packet.ICMPv6(l4).SetChecksum(ip.Src(), ip.Dst())
}
