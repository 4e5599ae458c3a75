package packet

import "encoding/binary"

// UDP header layout.
const (
	UDPHeaderLen      = 8
	UDPChecksumOffset = 6 // of the checksum field, from the header's start
)

// Ports is a view over the first four bytes of a TCP or UDP header, which
// hold the source and destination ports in both.
type Ports []byte

// Valid reports whether the ports fit.
func (p Ports) Valid() bool { return len(p) >= 4 }

// Src is the source port.
func (p Ports) Src() uint16 { return binary.BigEndian.Uint16(p[0:2]) }

// Dst is the destination port.
func (p Ports) Dst() uint16 { return binary.BigEndian.Uint16(p[2:4]) }

// SetSrc sets the source port (no checksum update).
func (p Ports) SetSrc(v uint16) { binary.BigEndian.PutUint16(p[0:2], v) }

// SetDst sets the destination port (no checksum update).
func (p Ports) SetDst(v uint16) { binary.BigEndian.PutUint16(p[2:4], v) }

// UDP is a view over a UDP datagram (header and payload).
type UDP []byte

// UDPFields are the fields Encode writes into a UDP header. A zero Checksum
// says the datagram has none.
type UDPFields struct {
	SrcPort, DstPort uint16
	Length           uint16 // header and payload
	Checksum         uint16
}

// Valid reports whether the header fits and its length field covers the
// header and fits in the slice.
func (u UDP) Valid() bool {
	if len(u) < UDPHeaderLen {
		return false
	}
	n := int(u.Length())
	return n >= UDPHeaderLen && n <= len(u)
}

// SrcPort is the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DstPort is the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length is the length field: header and payload.
func (u UDP) Length() uint16 { return binary.BigEndian.Uint16(u[4:6]) }

// Checksum is the stored checksum (0: none).
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// Payload is what follows the header, bounded by the length field (the
// view must be Valid).
func (u UDP) Payload() []byte { return u[UDPHeaderLen:u.Length()] }

// SetSrcPort sets the source port (no checksum update).
func (u UDP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(u[0:2], p) }

// SetDstPort sets the destination port (no checksum update).
func (u UDP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(u[2:4], p) }

// SetLength sets the length field (no checksum update).
func (u UDP) SetLength(n uint16) { binary.BigEndian.PutUint16(u[4:6], n) }

// SetChecksum stores c as the checksum.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[6:8], c) }

// Encode writes f into the header.
func (u UDP) Encode(f *UDPFields) {
	u.SetSrcPort(f.SrcPort)
	u.SetDstPort(f.DstPort)
	u.SetLength(f.Length)
	u.SetChecksum(f.Checksum)
}

// ComputeChecksum sets the checksum over the whole of u (header and
// payload, as long as the length field says) with the pseudo header of
// src and dst; a sum of 0 is sent as 0xffff, since 0 says "none" (RFC 768).
func (u UDP) ComputeChecksum(src, dst [4]byte) {
	u.computeChecksum(PseudoHeaderSum(src, dst, ProtoUDP, uint16(len(u))))
}

// computeChecksum sets the checksum over the whole of u from a pseudo
// header's sum; a sum of 0 is sent as 0xffff.
func (u UDP) computeChecksum(pseudo uint32) {
	u.SetChecksum(0)
	c := Checksum(u, pseudo)
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
}

// SetSrcPortWithChecksumUpdate sets the source port and adjusts the
// checksum by RFC 1624, leaving a checksum of 0 (none) alone.
func (u UDP) SetSrcPortWithChecksumUpdate(p uint16) { u.setPort(0, p) }

// SetDstPortWithChecksumUpdate sets the destination port and adjusts the
// checksum as SetSrcPortWithChecksumUpdate does.
func (u UDP) SetDstPortWithChecksumUpdate(p uint16) { u.setPort(2, p) }

func (u UDP) setPort(off int, p uint16) {
	old := binary.BigEndian.Uint16(u[off:])
	if old == p {
		return
	}
	binary.BigEndian.PutUint16(u[off:], p)
	if c := u.Checksum(); c != 0 {
		u.setUpdated(ChecksumUpdate16(c, old, p))
	}
}

// UpdateChecksumPseudoHeaderAddress adjusts the checksum for an address of
// the pseudo header changing from old to new. With full false the checksum
// field holds a partial sum (an offloaded frame's: the pseudo header's sum,
// not complemented, to be completed by whoever segments it) and is
// adjusted as such, as Linux's inet_proto_csum_replace4 does for
// CHECKSUM_PARTIAL; with full true a checksum of 0 (none) is left alone.
func (u UDP) UpdateChecksumPseudoHeaderAddress(old, new [4]byte, full bool) {
	c := u.Checksum()
	switch {
	case old == new:
	case !full:
		u.SetChecksum(^ChecksumUpdate32(^c, old, new))
	case c != 0:
		u.setUpdated(ChecksumUpdate32(c, old, new))
	}
}

// setUpdated stores an updated full checksum, kept off 0, which would say
// the datagram has none: 0xffff is the same sum (Linux's CSUM_MANGLED_0).
func (u UDP) setUpdated(c uint16) {
	if c == 0 {
		c = 0xffff
	}
	u.SetChecksum(c)
}
