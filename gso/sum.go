package gso

import (
	"encoding/binary"
	"math/bits"
)

// sum returns the one's complement sum of b, read as big-endian 16-bit
// words with an odd last byte padded with a zero, added to initial and
// folded to 16 bits. ^sum(b, initial) is packet.Checksum(b, initial); sum
// reads 32 bytes a round into a 64-bit accumulator whose carries wrap
// around, which is the same sum since 2^16 ≡ 1 modulo 0xffff.
func sum(b []byte, initial uint32) uint16 {
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
	return fold(acc)
}

// fold reduces a 64-bit one's complement sum to 16 bits with end-around
// carries; a non-zero sum stays non-zero, as packet.Checksum keeps it.
func fold(acc uint64) uint16 {
	s, c := bits.Add32(uint32(acc>>32), uint32(acc), 0)
	s += c
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}
