package nat

import "github.com/uswitch-dev/uswitch/packet"

// Untranslate turns a packet that the hooks translated (it went through
// postrouting and is about to be dropped by the router, e.g. when its
// next hop does not resolve) back into the packet its sender sent, so
// that the ICMP error the router answers it with quotes what the sender
// knows and goes to the sender itself, as Linux builds such errors from
// the packet conntrack translates back. A packet of no translated
// connection is left alone. partial says its transport checksum is a
// partial one (see rewrite).
func (t *Tracker) Untranslate(ip packet.IPv4, partial bool) {
	var tup Tuple
	if !read4(&tup, ip) {
		return
	}
	c, d, found := t.Table.Lookup(tup.Reverse())
	if !found || c.nat == 0 {
		return
	}
	// The packet travels in the direction opposite d; before NAT it had
	// that direction's tuple.
	was := c.orig
	if d == Original {
		was = c.reply
	}
	l4 := ip.Payload()
	if ip.Src() != was.Src || tup.Sport != was.Sport {
		rewrite(ip, l4, false, was.Src, was.Sport, partial)
	}
	if ip.Dst() != was.Dst || tup.Dport != was.Dport {
		rewrite(ip, l4, true, was.Dst, was.Dport, partial)
	}
}

// Untranslate6 is Untranslate for an IPv6 packet.
func (t *Tracker) Untranslate6(ip packet.IPv6, partial bool) {
	var tup Tuple6
	l4, _, _, ok := read6(&tup, ip)
	if !ok {
		return
	}
	rev := tup.Reverse()
	c, d, found := t.Table.Lookup6(&rev)
	if !found || c.nat == 0 {
		return
	}
	was := &c.six.orig
	if d == Original {
		was = &c.six.reply
	}
	if tup.Src != was.Src || tup.Sport != was.Sport {
		rewrite6(ip, tup.Proto, l4, false, was.Src, was.Sport, partial)
	}
	if tup.Dst != was.Dst || tup.Dport != was.Dport {
		rewrite6(ip, tup.Proto, l4, true, was.Dst, was.Dport, partial)
	}
}
