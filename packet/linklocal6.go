package packet

// LinkLocal6 is the IPv6 link-local address a Linux interface with MAC m
// takes by default: fe80:: and m's modified EUI-64 (RFC 4291 appendix A).
func (m MAC) LinkLocal6() [16]byte {
	return [16]byte{0xfe, 0x80, 8: m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]}
}

// LinkLocal6Words is m.LinkLocal6() as Words6 has it, computed in
// registers: on a per-packet path, building the address byte by byte to
// compare it costs a stalled 16-byte load.
func (m MAC) LinkLocal6Words() (hi, lo uint64) {
	return 0xfe80 << 48, uint64(m[0]^0x02)<<56 | uint64(m[1])<<48 | uint64(m[2])<<40 | 0xfffe<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}
