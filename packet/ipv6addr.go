package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 next-header values that are not transport protocols, and ICMPv6's.
const (
	ProtoHopByHop    = 0
	ProtoRouting     = 43
	ProtoFragment    = 44
	ProtoICMPv6      = 58
	ProtoNoNext      = 59
	ProtoDestOptions = 60
)

// Src is the source address.
func (p IPv6) Src() [16]byte { return [16]byte(p[8:24]) }

// Dst is the destination address.
func (p IPv6) Dst() [16]byte { return [16]byte(p[24:40]) }

// SrcAddr is the source address as a netip.Addr.
func (p IPv6) SrcAddr() netip.Addr { return netip.AddrFrom16(p.Src()) }

// DstAddr is the destination address as a netip.Addr.
func (p IPv6) DstAddr() netip.Addr { return netip.AddrFrom16(p.Dst()) }

// SetSrc sets the source address. IPv6 has no header checksum; the
// transport checksum, which covers the address through the pseudo header,
// is the caller's (see TCP.UpdateChecksumPseudoHeaderAddress6).
func (p IPv6) SetSrc(a [16]byte) { copy(p[8:24], a[:]) }

// SetDst sets the destination address (see SetSrc for checksums).
func (p IPv6) SetDst(a [16]byte) { copy(p[24:40], a[:]) }

// PayloadLen is the payload length field: what follows the fixed header.
func (p IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(p[4:6]) }

// HopLimit is the hop limit field.
func (p IPv6) HopLimit() uint8 { return p[7] }

// SetHopLimit sets the hop limit field.
func (p IPv6) SetHopLimit(h uint8) { p[7] = h }

// LenValid reports whether the fixed header is valid and the payload
// length fits in the slice (trailing Ethernet padding is allowed).
func (p IPv6) LenValid() bool {
	return p.Valid() && IPv6HeaderLen+int(p.PayloadLen()) <= len(p)
}

// Packet is p cut to its header and payload length, without padding. p
// must be LenValid.
func (p IPv6) Packet() IPv6 { return p[:IPv6HeaderLen+int(p.PayloadLen())] }

// Upper finds the upper-layer header past the extension headers that
// come before it (hop-by-hop, routing, destination options) and returns
// its protocol and offset in p. It stops at a fragment header, returning
// ProtoFragment and its offset, and reports false when an extension
// header does not fit. p must be LenValid.
func (p IPv6) Upper() (proto uint8, off int, ok bool) {
	end := IPv6HeaderLen + int(p.PayloadLen())
	proto, off = p.NextHeader(), IPv6HeaderLen
	for {
		switch proto {
		case ProtoHopByHop, ProtoRouting, ProtoDestOptions:
			if off+8 > end {
				return proto, off, false
			}
			proto, off = p[off], off+(int(p[off+1])+1)*8
			if off > end {
				return proto, off, false
			}
		default:
			return proto, off, true
		}
	}
}

// PseudoHeaderSum6 is the unfolded sum of the IPv6 pseudo header (RFC 8200
// section 8.1) for a transport checksum: addresses, upper-layer length and
// next header.
func PseudoHeaderSum6(src, dst [16]byte, proto uint8, length uint32) uint32 {
	s := uint32(Sum(src[:], 0)) + uint32(Sum(dst[:], 0))
	return s + length>>16 + length&0xffff + uint32(proto)
}

// ChecksumUpdate128 adjusts checksum for a 128-bit field (an IPv6 address)
// changing from old to new, by RFC 1624 eqn. 3 over its eight words.
func ChecksumUpdate128(checksum uint16, old, new [16]byte) uint16 {
	s := uint64(^checksum)
	for i := 0; i < 16; i += 8 {
		o, n := binary.BigEndian.Uint64(old[i:]), binary.BigEndian.Uint64(new[i:])
		s += sum64(^o) + sum64(n)
	}
	return ^fold(uint32(s>>32) + uint32(s&0xffffffff))
}

// sum64 is the sum of v's four 16-bit words (at most 4*0xffff).
func sum64(v uint64) uint64 {
	return v>>48 + v>>32&0xffff + v>>16&0xffff + v&0xffff
}

// updateAddr6 is checksum c adjusted for a pseudo-header address changing
// from old to new: a full checksum, or with full false a partial one (the
// pseudo header's sum, not complemented).
func updateAddr6(c uint16, old, new [16]byte, full bool) uint16 {
	if full {
		return ChecksumUpdate128(c, old, new)
	}
	return ^ChecksumUpdate128(^c, old, new)
}

// UpdateChecksumPseudoHeaderAddress6 adjusts the checksum for an IPv6
// address of the pseudo header changing from old to new. With full false
// the checksum field holds a partial sum (see
// UDP.UpdateChecksumPseudoHeaderAddress).
func (t TCP) UpdateChecksumPseudoHeaderAddress6(old, new [16]byte, full bool) {
	if old != new {
		t.SetChecksum(updateAddr6(t.Checksum(), old, new, full))
	}
}

// ComputeChecksum6 sets the checksum over the whole of t with the IPv6
// pseudo header of src and dst.
func (t TCP) ComputeChecksum6(src, dst [16]byte) {
	t.SetChecksum(0)
	t.SetChecksum(Checksum(t, PseudoHeaderSum6(src, dst, ProtoTCP, uint32(len(t)))))
}

// UpdateChecksumPseudoHeaderAddress6 adjusts the checksum for an IPv6
// address of the pseudo header changing from old to new, as
// UpdateChecksumPseudoHeaderAddress does for IPv4. A checksum of 0 is
// left alone: over IPv6 it is invalid (RFC 8200 section 8.1) and the
// receiver drops the datagram whatever its addresses.
func (u UDP) UpdateChecksumPseudoHeaderAddress6(old, new [16]byte, full bool) {
	c := u.Checksum()
	switch {
	case old == new:
	case !full:
		u.SetChecksum(updateAddr6(c, old, new, false))
	case c != 0:
		u.setUpdated(updateAddr6(c, old, new, true))
	}
}

// ComputeChecksum6 sets the checksum over the whole of u with the IPv6
// pseudo header of src and dst (0 is sent as 0xffff).
func (u UDP) ComputeChecksum6(src, dst [16]byte) {
	u.computeChecksum(PseudoHeaderSum6(src, dst, ProtoUDP, uint32(len(u))))
}
