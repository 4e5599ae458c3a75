package nat

import (
	"fmt"

	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
)

// tuple is one direction of a connection between addresses A: Tuple for
// IPv4, Tuple6 for IPv6. For ICMP echo (and ICMPv6 echo) both ports hold
// the echo identifier, so a tuple and its reverse carry it alike. What
// reads or keys a tuple on the hot path is a function of one family
// (read4, read6, key4, key6): generic, it would go through a dictionary.
type tuple[A neigh.Addr] struct {
	Src, Dst     A
	Sport, Dport uint16
	Proto        uint8
}

type (
	// Tuple is one direction of an IPv4 connection.
	Tuple = tuple[[4]byte]
	// Tuple6 is one direction of an IPv6 connection.
	Tuple6 = tuple[[16]byte]
)

// Reverse is the tuple of the opposite direction.
func (t tuple[A]) Reverse() tuple[A] {
	return tuple[A]{Src: t.Dst, Dst: t.Src, Sport: t.Dport, Dport: t.Sport, Proto: t.Proto}
}

func (t tuple[A]) String() string {
	return fmt.Sprintf("%s src=%s dst=%s sport=%d dport=%d", protoName(t.Proto), neigh.AddrOf(t.Src), neigh.AddrOf(t.Dst), t.Sport, t.Dport)
}

// view is t for listings.
func (t *tuple[A]) view() TupleView {
	return TupleView{Src: neigh.AddrOf(t.Src), Dst: neigh.AddrOf(t.Dst), Sport: t.Sport, Dport: t.Dport}
}

// ports is t without its addresses: what the Tuple fields of an IPv6
// connection hold, so that what depends on the protocol and ports alone
// (timeouts, states, rules' port matches) reads them as for IPv4.
func (t *tuple[A]) ports() Tuple { return Tuple{Sport: t.Sport, Dport: t.Dport, Proto: t.Proto} }

func protoName(p uint8) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case packet.ProtoICMP:
		return "icmp"
	case packet.ProtoICMPv6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto-%d", p)
}

// keyOf is the key of ip's tuple t, the addresses read from ip at once.
func keyOf(ip packet.IPv4, t *Tuple) key {
	return key{addrs: ip.AddrPair(), rest: uint64(t.Sport)<<24 | uint64(t.Dport)<<8 | uint64(t.Proto)}
}

// read4 sets t to the tuple of an IPv4 packet whose header is valid. It
// reports false for what cannot be tracked: a non-first fragment, a TCP or
// UDP packet too short for its ports, and ICMP that is not an echo (errors
// are handled as related; other types are not tracked).
func read4(t *Tuple, ip packet.IPv4) bool {
	*t = Tuple{Src: ip.Src(), Dst: ip.Dst(), Proto: ip.Protocol()}
	if ip.FragmentOffset() != 0 {
		return false
	}
	l4 := ip.Payload()
	switch t.Proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		p := packet.Ports(l4)
		if !p.Valid() {
			return false
		}
		t.Sport, t.Dport = p.Src(), p.Dst()
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

// rewrite sets the destination (dst) or source address of the IP header
// and port of the transport header l4 that follows it (the id of an ICMP
// echo, whatever the side), adjusting the checksums that cover them. l4
// may be cut short, as in the packet an ICMP error quotes.
//
// A partial transport checksum (an offloaded frame's, to be completed by
// whoever segments it) holds only the pseudo header's sum, not
// complemented: the address changes it, the port does not (the port is
// summed when the checksum is completed), as Linux's
// inet_proto_csum_replace4 does for CHECKSUM_PARTIAL. A header too short
// to hold its checksum gets the new port alone.
func rewrite(ip packet.IPv4, l4 []byte, dst bool, addr [4]byte, port uint16, partial bool) {
	old := ip.Src()
	if dst {
		old = ip.Dst()
		ip.SetDstWithChecksumUpdate(addr)
	} else {
		ip.SetSrcWithChecksumUpdate(addr)
	}
	proto := ip.Protocol()
	fits := sumFits(proto, l4)
	switch full := fits && !partial; {
	case full && proto == packet.ProtoTCP: // the common cases first, with no call more
		t := packet.TCP(l4)
		t.UpdateChecksumPseudoHeaderAddress(old, addr, true)
		if dst {
			t.SetDstPortWithChecksumUpdate(port)
		} else {
			t.SetSrcPortWithChecksumUpdate(port)
		}
	case full && proto == packet.ProtoUDP:
		u := packet.UDP(l4)
		u.UpdateChecksumPseudoHeaderAddress(old, addr, true)
		if dst {
			u.SetDstPortWithChecksumUpdate(port)
		} else {
			u.SetSrcPortWithChecksumUpdate(port)
		}
	default:
		if fits && proto == packet.ProtoTCP {
			packet.TCP(l4).UpdateChecksumPseudoHeaderAddress(old, addr, false)
		} else if fits && proto == packet.ProtoUDP {
			packet.UDP(l4).UpdateChecksumPseudoHeaderAddress(old, addr, false)
		}
		rewritePort(proto, l4, dst, port, full)
	}
}

// sumFits reports whether transport header l4 of protocol proto holds
// its checksum (a quoted packet's may be cut short).
func sumFits(proto uint8, l4 []byte) bool {
	switch proto {
	case packet.ProtoTCP:
		return len(l4) >= packet.TCPChecksumOffset+2
	case packet.ProtoUDP:
		return len(l4) >= packet.UDPHeaderLen
	}
	return len(l4) >= packet.ICMPHeaderLen
}

// rewritePort sets the destination (dst) or source port of transport
// header l4 (an echo's id, whatever the side), adjusting its checksum when
// full says it is a full one that l4 holds.
func rewritePort(proto uint8, l4 []byte, dst bool, port uint16, full bool) {
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		if !full {
			setPort(packet.Ports(l4), dst, port)
			return
		}
		if proto == packet.ProtoUDP {
			if dst {
				packet.UDP(l4).SetDstPortWithChecksumUpdate(port)
			} else {
				packet.UDP(l4).SetSrcPortWithChecksumUpdate(port)
			}
		} else if dst {
			packet.TCP(l4).SetDstPortWithChecksumUpdate(port)
		} else {
			packet.TCP(l4).SetSrcPortWithChecksumUpdate(port)
		}
	case packet.ProtoICMP, packet.ProtoICMPv6:
		packet.ICMP(l4).SetIDWithChecksumUpdate(port)
	}
}

// setPort sets the destination (dst) or source port with no checksum
// update.
func setPort(p packet.Ports, dst bool, port uint16) {
	if dst {
		p.SetDst(port)
	} else {
		p.SetSrc(port)
	}
}

// quotedPorts reads the ports of a quoted packet's transport header l4 (at
// least 8 bytes) of protocol proto: TCP's and UDP's, or the id of an ICMP
// or ICMPv6 echo in both. It reports false for any other packet: nothing
// else is tracked, so no error about it is related to a connection.
func quotedPorts(proto uint8, l4 []byte) (sport, dport uint16, ok bool) {
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		p := packet.Ports(l4)
		return p.Src(), p.Dst(), true
	case packet.ProtoICMP, packet.ProtoICMPv6:
		echo := l4[0] == packet.ICMPEchoRequest || l4[0] == packet.ICMPEchoReply
		if proto == packet.ProtoICMPv6 {
			echo = l4[0] == packet.ICMPv6EchoRequest || l4[0] == packet.ICMPv6EchoReply
		}
		if echo {
			id := packet.ICMP(l4).ID()
			return id, id, true
		}
	}
	return 0, 0, false
}
