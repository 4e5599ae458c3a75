package packet

import (
	"encoding/binary"
	"math/bits"
)

// Checksum returns the Internet checksum (RFC 1071) of b folded into initial,
// as the one's complement of the one's complement sum. Pass 0 as initial for
// a plain header checksum, or a pseudo-header sum from PseudoHeaderSum.
func Checksum(b []byte, initial uint32) uint16 {
	return ^Sum(b, initial)
}

// Sum returns the one's complement sum of b, read as big-endian 16-bit
// words with an odd last byte padded with a zero, added to initial and
// folded to 16 bits (not complemented: what a partial checksum holds). It
// reads 32 bytes a round into a 64-bit accumulator whose carries wrap
// around, which is the same sum since 2^16 ≡ 1 modulo 0xffff.
func Sum(b []byte, initial uint32) uint16 {
	acc := uint64(initial)
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), 0)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), c)
		acc += c // cannot overflow: after a carry acc is at most 2^64-2
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	// The rest, up to 7 bytes, starts at an even offset: it goes into the
	// same 64-bit word position as a zero-padded last word would.
	var tail uint64
	if len(b) >= 4 {
		tail = uint64(binary.BigEndian.Uint32(b)) << 32
		b = b[4:]
	}
	if len(b) >= 2 {
		tail |= uint64(binary.BigEndian.Uint16(b)) << 16
		b = b[2:]
	}
	if len(b) == 1 {
		tail |= uint64(b[0]) << 8
	}
	acc, c = bits.Add64(acc, tail, 0)
	acc += c
	s, c32 := bits.Add32(uint32(acc>>32), uint32(acc), 0)
	return fold(s + c32)
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

// PutChecksum stores a 16-bit checksum at b[0:2], in network byte order:
// for a checksum field found by an offset (a virtio-net header's) rather
// than by a view.
func PutChecksum(b []byte, c uint16) { binary.BigEndian.PutUint16(b, c) }
