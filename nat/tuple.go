package nat

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/uswitch-dev/uswitch/packet"
)

// Tuple is one direction of a connection. For ICMP echo both ports hold the
// echo identifier, so a tuple and its reverse carry it alike.
type Tuple struct {
	Src, Dst     [4]byte
	Sport, Dport uint16
	Proto        uint8
}

// Reverse is the tuple of the opposite direction.
func (t Tuple) Reverse() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, Sport: t.Dport, Dport: t.Sport, Proto: t.Proto}
}

func (t Tuple) String() string {
	return fmt.Sprintf("%s src=%s dst=%s sport=%d dport=%d", protoName(t.Proto),
		netip.AddrFrom4(t.Src), netip.AddrFrom4(t.Dst), t.Sport, t.Dport)
}

func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	}
	return fmt.Sprintf("proto-%d", p)
}

// keyOf is the key of ip's tuple t, the addresses read from ip at once.
func keyOf(ip packet.IPv4, t *Tuple) key {
	return key{addrs: binary.BigEndian.Uint64(ip[12:20]), rest: uint64(t.Sport)<<24 | uint64(t.Dport)<<8 | uint64(t.Proto)}
}

// read sets t to the tuple of an IPv4 packet whose header is valid. It
// reports false for what cannot be tracked: a non-first fragment, a TCP or
// UDP packet too short for its ports, and ICMP that is not an echo (errors
// are handled as related; other types are not tracked).
func (t *Tuple) read(ip packet.IPv4) bool {
	*t = Tuple{Src: ip.Src(), Dst: ip.Dst(), Proto: ip.Protocol()}
	if ip.FragmentOffset() != 0 {
		return false
	}
	l4 := ip.Payload()
	switch t.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		if len(l4) < 4 {
			return false
		}
		t.Sport, t.Dport = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
	case packet.ProtoICMP:
		m := packet.ICMP(l4)
		if !m.Valid() || (m.Type() != packet.ICMPEchoRequest && m.Type() != packet.ICMPEchoReply) {
			return false
		}
		t.Sport, t.Dport = m.ID(), m.ID()
	}
	return true
}

// hasPorts reports whether proto's tuples hold ports that NAT may change
// (ICMP echo holds its identifier in both instead).
func hasPorts(proto uint8) bool { return proto == packet.ProtoTCP || proto == packet.ProtoUDP }

// l4Checksum returns the offset, within the IP payload, of the transport
// checksum that covers the addresses (the pseudo header), or -1.
func l4Checksum(proto uint8, l4 []byte) int {
	switch proto {
	case packet.ProtoTCP:
		if len(l4) >= 18 {
			return 16
		}
	case packet.ProtoUDP:
		if len(l4) >= 8 && (l4[6] != 0 || l4[7] != 0) { // checksum 0: none, keep it so
			return 6
		}
	}
	return -1
}

// setAddr rewrites the 4-byte address at b[off:] and adjusts the 16-bit
// checksums at the given offsets of b (negative offsets are skipped).
func setAddr(b []byte, off int, v [4]byte, sums ...int) {
	old := [4]byte(b[off : off+4])
	if old == v {
		return
	}
	copy(b[off:], v[:])
	for _, s := range sums {
		if s >= 0 {
			binary.BigEndian.PutUint16(b[s:], packet.ChecksumUpdate32(binary.BigEndian.Uint16(b[s:]), old, v))
		}
	}
}

// setPort rewrites the 16-bit field at b[off:] and adjusts the checksums at
// the given offsets of b (negative offsets are skipped).
func setPort(b []byte, off int, v uint16, sums ...int) {
	old := binary.BigEndian.Uint16(b[off:])
	if old == v {
		return
	}
	binary.BigEndian.PutUint16(b[off:], v)
	for _, s := range sums {
		if s >= 0 {
			binary.BigEndian.PutUint16(b[s:], packet.ChecksumUpdate16(binary.BigEndian.Uint16(b[s:]), old, v))
		}
	}
}

// Field offsets in an IPv4 header.
const (
	ipSum = 10
	ipSrc = 12
	ipDst = 16
)

// rewriteDst gives ip (a full packet, header valid) the destination of t:
// address and port (the echo id for ICMP), with every checksum adjusted.
// partial says the transport checksum is a partial one (see rewrite).
func rewriteDst(ip packet.IPv4, t Tuple, partial bool) {
	rewrite(ip, ipDst, 2, t.Dst, t.Dport, partial)
}

// rewriteSrc gives ip the source address and port of t.
func rewriteSrc(ip packet.IPv4, t Tuple, partial bool) {
	rewrite(ip, ipSrc, 0, t.Src, t.Sport, partial)
}

// rewrite sets the address at addrOff of the IP header and the port at
// portOff of the transport header (the id of an ICMP echo, whatever the
// side).
//
// A partial transport checksum (an offloaded frame's, to be completed by
// whoever segments it) holds only the pseudo header's sum, not
// complemented: the address changes it, the port does not (the port is
// summed when the checksum is completed), as Linux's
// inet_proto_csum_replace4 does for CHECKSUM_PARTIAL.
func rewrite(ip packet.IPv4, addrOff, portOff int, addr [4]byte, port uint16, partial bool) {
	hl := ip.HeaderLen()
	b := ip[:ip.TotalLen()]
	proto := ip.Protocol()
	l4 := b[hl:]
	sum := l4Checksum(proto, l4)
	if partial && hasPorts(proto) {
		if p := partialSum(proto, l4); p >= 0 {
			p += hl
			old := [4]byte(b[addrOff : addrOff+4])
			binary.BigEndian.PutUint16(b[p:], ^packet.ChecksumUpdate32(^binary.BigEndian.Uint16(b[p:]), old, addr))
		}
		sum = -1
	}
	if sum >= 0 {
		sum += hl
	}
	setAddr(b, addrOff, addr, ipSum, sum)
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		setPort(b, hl+portOff, port, sum)
	case packet.ProtoICMP:
		setPort(b, hl+4, port, hl+2) // the echo id, under the ICMP checksum
	}
	if proto == packet.ProtoUDP && sum >= 0 {
		udpSumNotZero(b[sum:])
	}
}

// partialSum returns the offset, within the IP payload, of a TCP or UDP
// partial checksum, or -1 when the header is too short to hold one.
func partialSum(proto uint8, l4 []byte) int {
	if proto == packet.ProtoTCP && len(l4) >= 18 {
		return 16
	}
	if proto == packet.ProtoUDP && len(l4) >= 8 {
		return 6
	}
	return -1
}

// udpSumNotZero keeps an updated UDP checksum from reading 0, which says
// the datagram has none: 0xffff is the same sum (RFC 768; Linux's
// CSUM_MANGLED_0).
func udpSumNotZero(sum []byte) {
	if sum[0] == 0 && sum[1] == 0 {
		sum[0], sum[1] = 0xff, 0xff
	}
}
