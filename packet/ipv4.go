package packet

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 protocol numbers and header limits.
const (
	IPv4MinHeaderLen = 20
	ProtoICMP        = 1
	ProtoTCP         = 6
	ProtoUDP         = 17
)

// IPv4 is a view over an IPv4 packet (header and payload).
type IPv4 []byte

// Valid reports whether the slice holds a well-formed header: version 4, a
// header length of at least 20 bytes that fits, and a total length that
// covers the header and fits in the slice. Trailing Ethernet padding beyond
// the total length is allowed.
func (p IPv4) Valid() bool {
	if len(p) < IPv4MinHeaderLen || p[0]>>4 != 4 {
		return false
	}
	hl := p.HeaderLen()
	tl := int(p.TotalLen())
	return hl >= IPv4MinHeaderLen && hl <= tl && tl <= len(p)
}

// HeaderLen is the header length in bytes (IHL*4).
func (p IPv4) HeaderLen() int { return int(p[0]&0x0f) * 4 }

// TotalLen is the total length field.
func (p IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(p[2:4]) }

// TTL is the time-to-live field.
func (p IPv4) TTL() uint8 { return p[8] }

// Protocol is the transport protocol number.
func (p IPv4) Protocol() uint8 { return p[9] }

// HeaderChecksum is the stored header checksum.
func (p IPv4) HeaderChecksum() uint16 { return binary.BigEndian.Uint16(p[10:12]) }

// Src is the source address.
func (p IPv4) Src() [4]byte { return [4]byte(p[12:16]) }

// Dst is the destination address.
func (p IPv4) Dst() [4]byte { return [4]byte(p[16:20]) }

// DstAddr is the destination address as a netip.Addr.
func (p IPv4) DstAddr() netip.Addr { return netip.AddrFrom4(p.Dst()) }

// HeaderChecksumValid reports whether the header checksum verifies.
func (p IPv4) HeaderChecksumValid() bool {
	if p.HeaderLen() != IPv4MinHeaderLen {
		return Checksum(p[:p.HeaderLen()], 0) == 0
	}
	// The common header without options: five 32-bit words, whose sum
	// folds to the same one's complement sum as ten 16-bit ones.
	_ = p[19]
	s := uint64(binary.BigEndian.Uint32(p[0:4])) + uint64(binary.BigEndian.Uint32(p[4:8])) +
		uint64(binary.BigEndian.Uint32(p[8:12])) + uint64(binary.BigEndian.Uint32(p[12:16])) +
		uint64(binary.BigEndian.Uint32(p[16:20]))
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s == 0xffff
}

// SetHeaderChecksum recomputes the header checksum from scratch.
func (p IPv4) SetHeaderChecksum() {
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], Checksum(p[:p.HeaderLen()], 0))
}

// DecTTL decrements the TTL and updates the header checksum incrementally.
func (p IPv4) DecTTL() {
	old := binary.BigEndian.Uint16(p[8:10])
	p[8]--
	binary.BigEndian.PutUint16(p[10:12], ChecksumUpdate16(p.HeaderChecksum(), old, binary.BigEndian.Uint16(p[8:10])))
}

// Payload is the transport part, bounded by the total length.
func (p IPv4) Payload() []byte { return p[p.HeaderLen():p.TotalLen()] }

// IPv4 flag bits in the flags/fragment-offset field.
const (
	IPv4DontFragment  = 0x4000
	IPv4MoreFragments = 0x2000
	ipv4OffsetMask    = 0x1fff
)

// ID is the identification field.
func (p IPv4) ID() uint16 { return binary.BigEndian.Uint16(p[4:6]) }

// FlagsOffset is the raw flags and fragment offset field.
func (p IPv4) FlagsOffset() uint16 { return binary.BigEndian.Uint16(p[6:8]) }

// SetFlagsOffset sets the raw flags and fragment offset field (the header
// checksum is not updated).
func (p IPv4) SetFlagsOffset(v uint16) { binary.BigEndian.PutUint16(p[6:8], v) }

// DontFragment reports whether DF is set.
func (p IPv4) DontFragment() bool { return p.FlagsOffset()&IPv4DontFragment != 0 }

// FragmentOffset is the fragment offset in 8-byte units.
func (p IPv4) FragmentOffset() uint16 { return p.FlagsOffset() & ipv4OffsetMask }

// IsFragment reports whether the packet is a fragment (offset or MF set).
func (p IPv4) IsFragment() bool { return p.FlagsOffset()&(IPv4MoreFragments|ipv4OffsetMask) != 0 }

// SetTotalLen sets the total length field (the header checksum is not
// updated).
func (p IPv4) SetTotalLen(n uint16) { binary.BigEndian.PutUint16(p[2:4], n) }

// SetTTL sets the TTL (the header checksum is not updated).
func (p IPv4) SetTTL(t uint8) { p[8] = t }

// SetSrc sets the source address (no checksum update).
func (p IPv4) SetSrc(a [4]byte) { copy(p[12:16], a[:]) }

// SetDst sets the destination address (no checksum update).
func (p IPv4) SetDst(a [4]byte) { copy(p[16:20], a[:]) }

// IPv4Fields are the fields Encode writes into a 20-byte IPv4 header
// (no options).
type IPv4Fields struct {
	TotalLen    uint16
	ID          uint16
	FlagsOffset uint16 // flags and fragment offset (IPv4DontFragment...)
	TTL         uint8
	Protocol    uint8
	Src, Dst    [4]byte
}

// Encode writes f into the first 20 bytes of p as a header without
// options, with a computed header checksum.
func (p IPv4) Encode(f *IPv4Fields) {
	p[0] = 0x45
	p[1] = 0
	p.SetTotalLen(f.TotalLen)
	p.SetID(f.ID)
	p.SetFlagsOffset(f.FlagsOffset)
	p.SetTTL(f.TTL)
	p[9] = f.Protocol
	p.SetSrc(f.Src)
	p.SetDst(f.Dst)
	p[:IPv4MinHeaderLen].SetHeaderChecksum()
}

// HeaderFits reports whether p holds a version 4 header of at least 20
// bytes whose options fit, whatever the total length says: what a header
// quoted in an ICMP error or a super-frame's header must be.
func (p IPv4) HeaderFits() bool {
	return len(p) >= IPv4MinHeaderLen && p[0]>>4 == 4 && p.HeaderLen() >= IPv4MinHeaderLen && p.HeaderLen() <= len(p)
}

// SetID sets the identification field (no checksum update).
func (p IPv4) SetID(id uint16) { binary.BigEndian.PutUint16(p[4:6], id) }

// SetSrcWithChecksumUpdate sets the source address and adjusts the header
// checksum by RFC 1624.
func (p IPv4) SetSrcWithChecksumUpdate(a [4]byte) { p.setAddr(12, a) }

// SetDstWithChecksumUpdate sets the destination address and adjusts the
// header checksum by RFC 1624.
func (p IPv4) SetDstWithChecksumUpdate(a [4]byte) { p.setAddr(16, a) }

func (p IPv4) setAddr(off int, a [4]byte) {
	old := [4]byte(p[off : off+4])
	if old == a {
		return
	}
	copy(p[off:off+4], a[:])
	binary.BigEndian.PutUint16(p[10:12], ChecksumUpdate32(p.HeaderChecksum(), old, a))
}

// AddrPair is the source and destination addresses as one number, the
// source in the high half: what PairOf gives for them.
func (p IPv4) AddrPair() uint64 { return binary.BigEndian.Uint64(p[12:20]) }

// PairOf packs two addresses into one number as IPv4.AddrPair does.
func PairOf(src, dst [4]byte) uint64 { return uint64(AddrBits(src))<<32 | uint64(AddrBits(dst)) }

// AddrBits is an IPv4 address as a number, for prefix arithmetic.
func AddrBits(a [4]byte) uint32 { return binary.BigEndian.Uint32(a[:]) }
