package packet

// LinkLocal6 is the IPv6 link-local address a Linux interface with MAC m
// takes by default: fe80:: and m's modified EUI-64 (RFC 4291 appendix A).
func (m MAC) LinkLocal6() [16]byte {
	return [16]byte{0xfe, 0x80, 8: m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]}
}
