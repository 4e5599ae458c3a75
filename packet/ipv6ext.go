package packet

import "encoding/binary"

// IPv6Ext is a view over one IPv6 extension header (RFC 8200 4): hop-by-hop
// options, routing and destination options, whose second byte is the
// header's length in 8-octet units not counting the first 8, and the
// fragment header, which is always 8 bytes. A view's protocol is what the
// header before it named; the accessors that depend on it take it.
type IPv6Ext []byte

// IPv6FragmentLen is the size of a fragment header.
const IPv6FragmentLen = 8

// IsIPv6Ext reports whether proto is an extension header the views walk
// through (hop-by-hop, routing, destination options, fragment).
func IsIPv6Ext(proto uint8) bool {
	switch proto {
	case ProtoHopByHop, ProtoRouting6, ProtoDstOpts6, ProtoFragment6:
		return true
	}
	return false
}

// Valid reports whether the whole header of protocol proto fits in e.
func (e IPv6Ext) Valid(proto uint8) bool { return len(e) >= 2 && len(e) >= e.Len(proto) }

// NextHeader is the protocol of what follows the header.
func (e IPv6Ext) NextHeader() uint8 { return e[0] }

// Len is the header's length in bytes, its protocol being proto. It needs
// two bytes of e.
func (e IPv6Ext) Len(proto uint8) int {
	if proto == ProtoFragment6 {
		return IPv6FragmentLen
	}
	return (int(e[1]) + 1) * 8
}

// IPv6Fragment is a view over a fragment header (RFC 8200 4.5).
type IPv6Fragment []byte

// Valid reports whether the header fits.
func (f IPv6Fragment) Valid() bool { return len(f) >= IPv6FragmentLen }

// NextHeader is the protocol of the fragmented part.
func (f IPv6Fragment) NextHeader() uint8 { return f[0] }

// Offset is where the fragment's data starts in the fragmentable part of
// the original packet, in bytes; zero for the first fragment.
func (f IPv6Fragment) Offset() int { return int(binary.BigEndian.Uint16(f[2:4]) &^ 7) }

// More reports whether more fragments follow (the M flag).
func (f IPv6Fragment) More() bool { return f[3]&1 != 0 }

// ID is the fragment's identification.
func (f IPv6Fragment) ID() uint32 { return binary.BigEndian.Uint32(f[4:8]) }

// IPv6FragmentFields are what EncodeFragment writes.
type IPv6FragmentFields struct {
	NextHeader uint8
	Offset     int // in bytes, a multiple of 8
	More       bool
	ID         uint32
}

// Encode writes a fragment header; f must be Valid.
func (f IPv6Fragment) Encode(v *IPv6FragmentFields) {
	f[0], f[1] = v.NextHeader, 0
	om := uint16(v.Offset) &^ 7
	if v.More {
		om |= 1
	}
	binary.BigEndian.PutUint16(f[2:4], om)
	binary.BigEndian.PutUint32(f[4:8], v.ID)
}

// walk6 follows the extension headers in b from protocol proto at off to
// the upper-layer header and returns its protocol and offset. ok is false
// when an extension header does not fit in b, or after eight of them.
// For a fragment that is not the first, proto is ProtoFragment6 and off
// the fragment header's: its upper-layer header is in the first one.
func walk6(b []byte, proto uint8, off int) (uint8, int, bool) {
	for range 8 {
		if !IsIPv6Ext(proto) {
			return proto, off, true
		}
		e := IPv6Ext(b[off:])
		if !e.Valid(proto) {
			return 0, 0, false
		}
		if proto == ProtoFragment6 && IPv6Fragment(e).Offset() != 0 {
			return ProtoFragment6, off, true
		}
		proto, off = e.NextHeader(), off+e.Len(proto)
	}
	return 0, 0, false
}
