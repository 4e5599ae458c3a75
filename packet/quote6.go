package packet

// QuotedUpper is Upper for an IPv6 packet that may be cut short, as the
// one an ICMPv6 error quotes: the walk through its extension headers
// stops at what is there rather than at its payload length. ok is false
// when an extension header does not fit; for a fragment that is not the
// first, proto is ProtoFragment6 and off the fragment header's.
func (p IPv6) QuotedUpper() (proto uint8, off int, ok bool) {
	if len(p) < IPv6HeaderLen {
		return 0, 0, false
	}
	return walk6(p, p.NextHeader(), IPv6HeaderLen)
}
