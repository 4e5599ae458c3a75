package packet

import "encoding/binary"

// Checksum returns the Internet checksum (RFC 1071) of b folded into initial,
// as the one's complement of the one's complement sum. Pass 0 as initial for
// a plain header checksum, or a pseudo-header sum from PseudoHeaderSum.
func Checksum(b []byte, initial uint32) uint16 {
	return ^fold(sum(b, initial))
}

func sum(b []byte, s uint32) uint32 {
	n := len(b)
	i := 0
	for ; i+1 < n; i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if i < n {
		s += uint32(b[i]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = (s >> 16) + (s & 0xffff)
	}
	return uint16(s)
}

// PseudoHeaderSum is the unfolded sum of the IPv4 pseudo header for a
// transport checksum: addresses, protocol and transport length.
func PseudoHeaderSum(src, dst [4]byte, proto uint8, length uint16) uint32 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4]))
	s += uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4]))
	return s + uint32(proto) + uint32(length)
}

// ChecksumUpdate16 returns checksum adjusted for a 16-bit field changing from
// old to new, by RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
func ChecksumUpdate16(checksum, old, new uint16) uint16 {
	s := uint32(^checksum) + uint32(^old) + uint32(new)
	return ^fold(s)
}

// ChecksumUpdate32 adjusts checksum for a 32-bit field (an IPv4 address)
// changing from old to new.
func ChecksumUpdate32(checksum uint16, old, new [4]byte) uint16 {
	s := uint32(^checksum)
	s += uint32(^binary.BigEndian.Uint16(old[0:2])) + uint32(^binary.BigEndian.Uint16(old[2:4]))
	s += uint32(binary.BigEndian.Uint16(new[0:2])) + uint32(binary.BigEndian.Uint16(new[2:4]))
	return ^fold(s)
}
