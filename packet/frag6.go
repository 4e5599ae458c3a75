package packet

// FragmentAt finds a LenValid packet's fragment header: its offset in p,
// and the offset of the byte that names it (the fixed header's next
// header, or the first byte of the extension header before it), which
// names the fragmented part once the datagram is whole. ok is false when
// p has no fragment header or an extension header before it does not
// fit.
func (p IPv6) FragmentAt() (at, named int, ok bool) {
	b := p[:IPv6HeaderLen+int(p.PayloadLen())]
	proto, off, named := p.NextHeader(), IPv6HeaderLen, 6
	for range 8 {
		if !IsIPv6Ext(proto) {
			return 0, 0, false
		}
		e := IPv6Ext(b[off:])
		if !e.Valid(proto) {
			return 0, 0, false
		}
		if proto == ProtoFragment6 {
			return off, named, true
		}
		named = off
		proto, off = e.NextHeader(), off+e.Len(proto)
	}
	return 0, 0, false
}

// Unfragmentable finds where a fragment header goes in a LenValid packet
// that has none (RFC 8200 4.5): after the fixed header and the hop-by-hop,
// routing, and destination options (before a routing header) headers, at
// offset at; named is the offset of the byte that names what follows
// there. ok is false when an extension header does not fit.
func (p IPv6) Unfragmentable() (at, named int, ok bool) {
	b := p[:IPv6HeaderLen+int(p.PayloadLen())]
	proto, off, named := p.NextHeader(), IPv6HeaderLen, 6
	for range 8 {
		switch proto {
		case ProtoHopByHop, ProtoRouting6:
		case ProtoDstOpts6:
			// in the unfragmentable part only when a routing header follows
			if e := IPv6Ext(b[off:]); !e.Valid(proto) || e.NextHeader() != ProtoRouting6 {
				return off, named, e.Valid(proto)
			}
		default:
			return off, named, true
		}
		e := IPv6Ext(b[off:])
		if !e.Valid(proto) {
			return 0, 0, false
		}
		named = off
		proto, off = e.NextHeader(), off+e.Len(proto)
	}
	return 0, 0, false
}

// PutFragment6 writes into b the fragment of a whole IPv6 packet p
// (LenValid, with no fragment header) that carries bytes [off, end) of its
// fragmentable part: p's unfragmentable part (the at bytes Unfragmentable
// found, named the byte at named), a fragment header (identification id,
// more fragments to come or not), then the bytes. It returns the
// fragment's length; b must hold at+IPv6FragmentLen+end-off bytes and off
// be a multiple of 8.
func PutFragment6(b []byte, p IPv6, at, named, off, end int, more bool, id uint32) int {
	data := p[at : IPv6HeaderLen+int(p.PayloadLen())]
	n := copy(b, p[:at])
	next := b[named]
	b[named] = ProtoFragment6
	IPv6Fragment(b[n:]).Encode(&IPv6FragmentFields{NextHeader: next, Offset: off, More: more, ID: id})
	n += IPv6FragmentLen
	n += copy(b[n:], data[off:end])
	IPv6(b).SetPayloadLen(uint16(n - IPv6HeaderLen))
	return n
}

// ChainFits6 reports whether the data of a first fragment, b, whose
// fragment header names proto, holds the whole header chain: every
// extension header up to the upper-layer header and that header's first
// bytes (TCP's 20, UDP's 8, ICMPv6's 4), as RFC 7112 requires and Linux's
// ipv6_frag_thdr_truncated checks.
func ChainFits6(b []byte, proto uint8) bool {
	proto, off, ok := walk6(b, proto, 0)
	if !ok {
		return false
	}
	switch proto {
	case ProtoTCP:
		off += TCPMinHeaderLen
	case ProtoUDP:
		off += UDPHeaderLen
	case ProtoICMPv6:
		off += 4 // type, code, checksum
	}
	return off <= len(b)
}
