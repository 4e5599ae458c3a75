package packet

import (
	"encoding/binary"
	"math/bits"
)

// IPv6 header size.
const IPv6HeaderLen = 40

// IPv6 extension header numbers the views walk (RFC 8200 4.1) and
// ICMPv6's protocol number.
const (
	ProtoHopByHop  = 0
	ProtoICMPv6    = 58
	ProtoRouting6  = 43
	ProtoFragment6 = 44
	ProtoNoNext6   = 59
	ProtoDstOpts6  = 60
)

// IPv6MinMTU is the smallest MTU an IPv6 link has (RFC 8200 5): the
// bound of an ICMPv6 error's size.
const IPv6MinMTU = 1280

// IPv6 is a view over an IPv6 packet: the fixed header, and the walk
// through extension headers to the upper-layer header (Upper).
type IPv6 []byte

// Valid reports whether the fixed header fits and says version 6.
func (p IPv6) Valid() bool { return len(p) >= IPv6HeaderLen && p[0]>>4 == 6 }

// LenValid reports whether p is Valid and holds the payload its length
// field says (more may follow: Ethernet padding).
func (p IPv6) LenValid() bool {
	return p.Valid() && len(p) >= IPv6HeaderLen+int(p.PayloadLen())
}

// NextHeader is the protocol of what follows the fixed header.
func (p IPv6) NextHeader() uint8 { return p[6] }

// PayloadLen is the payload length field: the bytes after the fixed header.
func (p IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(p[4:6]) }

// SetPayloadLen sets the payload length field.
func (p IPv6) SetPayloadLen(n uint16) { binary.BigEndian.PutUint16(p[4:6], n) }

// HopLimit is the hop limit field.
func (p IPv6) HopLimit() uint8 { return p[7] }

// SetHopLimit sets the hop limit (IPv6 has no header checksum).
func (p IPv6) SetHopLimit(h uint8) { p[7] = h }

// Src is the source address.
func (p IPv6) Src() [16]byte { return [16]byte(p[8:24]) }

// Dst is the destination address.
func (p IPv6) Dst() [16]byte { return [16]byte(p[24:40]) }

// SrcWords and DstWords are Src and Dst as Words6 has them, read from
// the header: no address copied on the way to compare or mask them.
func (p IPv6) SrcWords() (hi, lo uint64) {
	return binary.BigEndian.Uint64(p[8:16]), binary.BigEndian.Uint64(p[16:24])
}

func (p IPv6) DstWords() (hi, lo uint64) {
	return binary.BigEndian.Uint64(p[24:32]), binary.BigEndian.Uint64(p[32:40])
}

// SetSrc sets the source address (no transport checksum update).
func (p IPv6) SetSrc(a [16]byte) { copy(p[8:24], a[:]) }

// SetDst sets the destination address (no transport checksum update).
func (p IPv6) SetDst(a [16]byte) { copy(p[24:40], a[:]) }

// Addrs are the source and destination addresses, as the pseudo header
// sums them.
func (p IPv6) Addrs() []byte { return p[8:IPv6HeaderLen] }

// Payload is what follows the fixed header, as long as the payload
// length says; p must be LenValid.
func (p IPv6) Payload() []byte { return p[IPv6HeaderLen : IPv6HeaderLen+int(p.PayloadLen())] }

// Upper walks the extension headers of a LenValid packet (hop-by-hop,
// routing, destination options, fragment: IPv6Ext) to the upper-layer
// header and returns its protocol and offset in p. ok is false when an
// extension header does not fit, or after eight of them. For a fragment
// that is not the first, proto is ProtoFragment6 and off the fragment
// header's.
func (p IPv6) Upper() (proto uint8, off int, ok bool) {
	if proto := p.NextHeader(); !IsIPv6Ext(proto) {
		return proto, IPv6HeaderLen, true // no extension header: most packets
	}
	return walk6(p[:IPv6HeaderLen+int(p.PayloadLen())], p.NextHeader(), IPv6HeaderLen)
}

// IsFragment reports whether the packet carries a fragment header (a
// fragment, or an atomic fragment), looking through the extension
// headers before it.
func (p IPv6) IsFragment() bool {
	_, ok := p.Fragment()
	return ok
}

// Fragment returns the packet's fragment header, looking through the
// extension headers before it, and whether it has one that fits.
func (p IPv6) Fragment() (IPv6Fragment, bool) {
	b := p[:IPv6HeaderLen+int(p.PayloadLen())]
	proto, off := p.NextHeader(), IPv6HeaderLen
	for range 8 {
		if !IsIPv6Ext(proto) {
			return nil, false
		}
		e := IPv6Ext(b[off:])
		if !e.Valid(proto) {
			return nil, false
		}
		if proto == ProtoFragment6 {
			return IPv6Fragment(e), true
		}
		proto, off = e.NextHeader(), off+e.Len(proto)
	}
	return nil, false
}

// IPv6Fields are the fields Encode writes into a fixed IPv6 header.
type IPv6Fields struct {
	TrafficClass uint8
	FlowLabel    uint32
	PayloadLen   uint16
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     [16]byte
}

// Encode writes f into the first 40 bytes of p.
func (p IPv6) Encode(f *IPv6Fields) {
	binary.BigEndian.PutUint32(p[0:4], 6<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&0xfffff)
	p.SetPayloadLen(f.PayloadLen)
	p[6] = f.NextHeader
	p.SetHopLimit(f.HopLimit)
	p.SetSrc(f.Src)
	p.SetDst(f.Dst)
}

// PseudoHeaderSum6 is the unfolded sum of the IPv6 pseudo header (RFC
// 8200 8.1) for a transport checksum: addresses, upper-layer length and
// next header.
func PseudoHeaderSum6(src, dst [16]byte, proto uint8, length uint32) uint32 {
	s := uint32(0)
	for i := 0; i < 16; i += 2 {
		s += uint32(binary.BigEndian.Uint16(src[i:])) + uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	return s + length>>16 + length&0xffff + uint32(proto)
}

// ChecksumUpdate128 adjusts checksum for a 128-bit field (an IPv6
// address of the pseudo header) changing from old to new, by RFC 1624.
// It sums 64-bit words with end-around carries, which is the 16-bit one's
// complement sum since 2^16 ≡ 1 modulo 0xffff (as Sum does): four
// additions instead of sixteen.
func ChecksumUpdate128(checksum uint16, old, new [16]byte) uint16 {
	oh, ol := Words6(old)
	nh, nl := Words6(new)
	s, c := bits.Add64(^oh, ^ol, 0)
	s, c = bits.Add64(s, nh, c)
	s, c = bits.Add64(s, nl, c)
	s, c = bits.Add64(s, uint64(^checksum), c)
	s, c = bits.Add64(s, 0, c) // the end-around carry, which may carry once more
	s += c
	s32, c32 := bits.Add32(uint32(s>>32), uint32(s), 0)
	return ^fold(s32 + c32)
}

// IsMulticast6 reports whether a is an IPv6 multicast address (ff00::/8).
func IsMulticast6(a [16]byte) bool { return a[0] == 0xff }

// IsLinkLocal6 reports whether a is a link-local unicast address
// (fe80::/10).
func IsLinkLocal6(a [16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }

// AddrBits6 is an IPv6 address as two 64-bit halves, for prefix matching.
func AddrBits6(a [16]byte) (hi, lo uint64) {
	return binary.BigEndian.Uint64(a[0:8]), binary.BigEndian.Uint64(a[8:16])
}
