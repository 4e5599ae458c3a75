package packet

import "encoding/binary"

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

// Words6 is an IPv6 address as two numbers, the high half first: for
// hashing and prefix arithmetic.
func Words6(a [16]byte) (hi, lo uint64) {
	return binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
}
