package nat

import (
	"github.com/uswitch-dev/uswitch/packet"
)

// key6 is t's key in a table whose IPv6 fold is keyed by seed: the four
// 64-bit words of the addresses, each keyed and multiplied by its own odd
// constant (in parallel: a bijection of each word), folded by xor. Without
// the seed nobody can aim many tuples at one key; equal folds of
// different tuples are told apart by comparing the tuples (shard.get).
func key6(t *Tuple6, seed uint64) key {
	sh, sl := packet.Words6(t.Src)
	dh, dl := packet.Words6(t.Dst)
	h := (sh^seed)*0x9e3779b97f4a7c15 ^ (sl+seed)*0xbf58476d1ce4e5b9 ^
		(dh^seed>>7)*0x94d049bb133111eb ^ (dl+seed<<9)*0xd6e8feb86659fd93
	return key{addrs: h ^ h>>31, rest: keyV6 | uint64(t.Sport)<<24 | uint64(t.Dport)<<8 | uint64(t.Proto)}
}

// keys are c's two keys in t: original, reply.
func (t *Table) keys(c *Conn) [2]key {
	if c.six != nil {
		return [2]key{key6(&c.six.orig, t.seed6), key6(&c.six.reply, t.seed6)}
	}
	return [2]key{key4(c.orig), key4(c.reply)}
}

// setTargets sets what target (and target6) return from c's tuples.
func (c *Conn) setTargets() {
	c.targets = [2]Tuple{Original: c.reply.Reverse(), Reply: c.orig.Reverse()}
	if c.six != nil {
		c.six.targets = [2]Tuple6{Original: c.six.reply.Reverse(), Reply: c.six.orig.Reverse()}
	}
}

// read6 sets t to the tuple of an IPv6 packet whose payload length is
// valid and returns its upper-layer header and that header's offset in
// ip (nil and 0 when there is none to read), and its fragment header if
// it has one. It reports false for what cannot be tracked by itself:
// a fragment but the first (its protocol is the fragment header's next
// header, its ports unknown), extension headers that do not
// fit, a TCP or UDP header too short for its ports, and ICMPv6 that is
// not an echo (errors are handled as related; neighbour discovery and
// the rest are not tracked). A first fragment is tracked by the
// transport header it holds.
func read6(t *Tuple6, ip packet.IPv6) (l4 []byte, off int, frag packet.IPv6Fragment, ok bool) {
	// field by field: a literal is built on the stack and copied in
	// overlapping 16-byte moves that stall on its own stores
	t.Src, t.Dst = ip.Src(), ip.Dst()
	t.Sport, t.Dport = 0, 0
	proto, off := ip.NextHeader(), packet.IPv6HeaderLen
	if proto != packet.ProtoTCP && proto != packet.ProtoUDP && proto != packet.ProtoICMPv6 {
		// extension headers first (rare): walk them
		proto, off, ok = ip.Upper()
		frag, _ = ip.Fragment()
		t.Proto = proto
		if frag != nil && frag.Offset() != 0 {
			t.Proto = frag.NextHeader()
		}
		if !ok || proto == packet.ProtoFragment6 {
			return nil, 0, frag, false
		}
	}
	t.Proto = proto
	l4 = ip[off : packet.IPv6HeaderLen+int(ip.PayloadLen())]
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		p := packet.Ports(l4)
		if !p.Valid() {
			return l4, off, frag, false
		}
		t.Sport, t.Dport = p.Src(), p.Dst()
	case packet.ProtoICMPv6:
		m := packet.ICMPv6(l4)
		if !m.Valid() || (m.Type() != packet.ICMPv6EchoRequest && m.Type() != packet.ICMPv6EchoReply) {
			return l4, off, frag, false
		}
		t.Sport, t.Dport = m.ID(), m.ID()
	}
	return l4, off, frag, true
}
