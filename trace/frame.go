package trace

import (
	"fmt"
	"net/netip"

	"github.com/uswitch-dev/uswitch/packet"
)

// Packet describes a synthetic IPv4 or IPv6 packet to trace.
type Packet struct {
	SrcMAC, DstMAC packet.MAC
	Src, Dst       netip.Addr
	Proto          string // tcp, udp or icmp (echo request; ICMPv6's for IPv6)
	Sport, Dport   uint16
	SYN            bool  // a TCP SYN (else ACK)
	Len            int   // IP length (0: headers only, or what the payload needs)
	TTL            uint8 // or hop limit
}

// Build returns the Ethernet frame of p, with valid checksums: IPv4, or
// IPv6 when both addresses are.
func (p Packet) Build() ([]byte, error) {
	six := p.Src.Is6() && p.Dst.Is6() && !p.Src.Is4In6() && !p.Dst.Is4In6()
	if !six && (!p.Src.Is4() || !p.Dst.Is4()) {
		return nil, fmt.Errorf("trace: source %v and destination %v must be both IPv4 or both IPv6", p.Src, p.Dst)
	}
	var proto uint8
	l4 := 0
	switch p.Proto {
	case "tcp":
		proto, l4 = packet.ProtoTCP, 20
	case "udp":
		proto, l4 = packet.ProtoUDP, 8
	case "icmp", "":
		proto, l4 = packet.ProtoICMP, 8
		if six {
			proto = packet.ProtoICMPv6
		}
	default:
		return nil, fmt.Errorf("trace: protocol %q: want tcp, udp or icmp", p.Proto)
	}
	hl := packet.IPv4MinHeaderLen
	if six {
		hl = packet.IPv6HeaderLen
	}
	n := hl + l4
	if p.Len > 0 {
		if p.Len < n || p.Len > 65535 {
			return nil, fmt.Errorf("trace: length %d: want %d to 65535", p.Len, n)
		}
		n = p.Len
	}
	if p.TTL == 0 {
		p.TTL = 64
	}
	f := make([]byte, packet.EthernetHeaderLen+n)
	e := packet.Ethernet(f)
	e.SetDst(p.DstMAC)
	e.SetSrc(p.SrcMAC)
	t := f[packet.EthernetHeaderLen+hl:]
	var sum uint32 // the pseudo header's
	if six {
		e.SetEtherType(packet.EtherTypeIPv6)
		src, dst := p.Src.As16(), p.Dst.As16()
		packet.IPv6(f[packet.EthernetHeaderLen:]).Encode(&packet.IPv6Fields{PayloadLen: uint16(len(t)), NextHeader: proto, HopLimit: p.TTL, Src: src, Dst: dst})
		sum = packet.PseudoHeaderSum6(src, dst, proto, uint32(len(t)))
	} else {
		e.SetEtherType(packet.EtherTypeIPv4)
		src, dst := p.Src.As4(), p.Dst.As4()
		packet.IPv4(f[packet.EthernetHeaderLen:]).Encode(&packet.IPv4Fields{TotalLen: uint16(n), ID: 1, TTL: p.TTL, Protocol: proto, Src: src, Dst: dst})
		sum = packet.PseudoHeaderSum(src, dst, proto, uint16(len(t)))
	}
	switch proto {
	case packet.ProtoTCP:
		tf := packet.TCPFields{SrcPort: p.Sport, DstPort: p.Dport, Seq: 1, Ack: 1, DataOffset: packet.TCPMinHeaderLen, Flags: tcpACK, Window: 64240}
		if p.SYN {
			tf.Ack, tf.Flags = 0, tcpSYN
		}
		packet.TCP(t).Encode(&tf)
		packet.TCP(t).SetChecksum(packet.Checksum(t, sum))
	case packet.ProtoUDP:
		packet.UDP(t).Encode(&packet.UDPFields{SrcPort: p.Sport, DstPort: p.Dport, Length: uint16(len(t))})
		c := packet.Checksum(t, sum)
		if c == 0 {
			c = 0xffff
		}
		packet.UDP(t).SetChecksum(c)
	case packet.ProtoICMPv6:
		m := packet.ICMPv6(t)
		m.Encode(&packet.ICMPFields{Type: packet.ICMPv6EchoRequest, Rest: uint32(p.Sport)<<16 | 1}) // id, sequence 1
		m.SetChecksum(p.Src.As16(), p.Dst.As16())
	default:
		m := packet.ICMP(t)
		m.Encode(&packet.ICMPFields{Type: packet.ICMPEchoRequest, Rest: uint32(p.Sport)<<16 | 1}) // id, sequence 1
		m.SetChecksum()
	}
	return f, nil
}

// Describe is a one-line summary of an Ethernet frame, tcpdump style.
func Describe(frame []byte) string {
	e := packet.Ethernet(frame)
	if !e.Valid() {
		return fmt.Sprintf("truncated frame (%d bytes)", len(frame))
	}
	head := fmt.Sprintf("%v > %v", e.Src(), e.Dst())
	switch e.EtherType() {
	case packet.EtherTypeARP:
		a := packet.ARP(e.Payload())
		if !a.Valid() {
			return head + " ARP (bad)"
		}
		if a.Op() == 1 {
			return fmt.Sprintf("%s ARP who-has %v tell %v", head, netip.AddrFrom4(a.TargetIP()), netip.AddrFrom4(a.SenderIP()))
		}
		return fmt.Sprintf("%s ARP %v is-at %v", head, netip.AddrFrom4(a.SenderIP()), a.SenderMAC())
	case packet.EtherTypeIPv4:
	case packet.EtherTypeIPv6:
		return describe6(head, packet.IPv6(e.Payload()))
	default:
		return fmt.Sprintf("%s ethertype 0x%04x, length %d", head, e.EtherType(), len(frame))
	}
	ip := packet.IPv4(e.Payload())
	if !ip.Valid() {
		return head + " IPv4 (bad header)"
	}
	s, d := netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst())
	l4 := ip.Payload()
	tail := fmt.Sprintf("ttl %d, length %d", ip.TTL(), ip.TotalLen())
	switch ip.Protocol() {
	case packet.ProtoTCP, packet.ProtoUDP:
		name := "udp"
		if ip.Protocol() == packet.ProtoTCP {
			name = "tcp"
		}
		if pt := packet.Ports(l4); pt.Valid() && !ip.IsFragment() {
			flags := ""
			if t := packet.TCP(l4); name == "tcp" && t.Valid() {
				flags = " [" + tcpFlags(t.Flags()) + "]"
			}
			return fmt.Sprintf("%s IPv4 %v:%d > %v:%d %s%s, %s", head, s, pt.Src(), d, pt.Dst(), name, flags, tail)
		}
		return fmt.Sprintf("%s IPv4 %v > %v %s, %s", head, s, d, name, tail)
	case packet.ProtoICMP:
		if m := packet.ICMP(l4); m.Valid() {
			return fmt.Sprintf("%s IPv4 %v > %v icmp type %d code %d, %s", head, s, d, m.Type(), m.Code(), tail)
		}
	}
	return fmt.Sprintf("%s IPv4 %v > %v proto %d, %s", head, s, d, ip.Protocol(), tail)
}

// TCP flags the builder sets.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

func tcpFlags(f uint8) string {
	const names = "FSRPAU"
	out := ""
	for i := range 6 {
		if f&(1<<i) != 0 {
			out += string(names[i])
		}
	}
	if out == "" {
		return "."
	}
	return out
}

// Reply returns the answer to an IPv4 or IPv6 frame as its destination
// would send it: addresses, ports and MACs swapped, an echo request
// answered with an echo reply, a SYN with a SYN-ACK, TTL (hop limit) 64,
// checksums recomputed.
func Reply(frame []byte) ([]byte, error) {
	e := packet.Ethernet(frame)
	switch {
	case !e.Valid():
	case e.EtherType() == packet.EtherTypeIPv4 && packet.IPv4(e.Payload()).Valid():
	case e.EtherType() == packet.EtherTypeIPv6 && packet.IPv6(e.Payload()).LenValid():
	default:
		return nil, fmt.Errorf("trace: reply: not an IP frame")
	}
	f := append([]byte(nil), frame...)
	e = packet.Ethernet(f)
	src, dst := e.Src(), e.Dst()
	e.SetSrc(dst)
	e.SetDst(src)
	var t []byte
	var proto uint8
	var sum uint32 // the reply's pseudo header's
	if e.EtherType() == packet.EtherTypeIPv4 {
		ip := packet.IPv4(e.Payload())
		s, d := ip.Src(), ip.Dst()
		ip.SetSrc(d)
		ip.SetDst(s)
		ip.SetTTL(64)
		ip.SetHeaderChecksum()
		t, proto = ip.Payload(), ip.Protocol()
		sum = packet.PseudoHeaderSum(d, s, proto, uint16(len(t)))
	} else {
		ip := packet.IPv6(e.Payload())
		s, d := ip.Src(), ip.Dst()
		ip.SetSrc(d)
		ip.SetDst(s)
		ip.SetHopLimit(64)
		var off int
		var ok bool
		if proto, off, ok = ip.Upper(); !ok {
			return nil, fmt.Errorf("trace: reply: IPv6 extension headers cut short")
		}
		t = ip[off : packet.IPv6HeaderLen+int(ip.PayloadLen())]
		sum = packet.PseudoHeaderSum6(d, s, proto, uint32(len(t)))
	}
	switch proto {
	case packet.ProtoTCP:
		h := packet.TCP(t)
		if !h.Valid() {
			return nil, fmt.Errorf("trace: reply: TCP header cut short")
		}
		sp, dp, seq := h.SrcPort(), h.DstPort(), h.Seq()
		h.SetSrcPort(dp)
		h.SetDstPort(sp)
		h.SetSeq(1)
		h.SetAck(seq + 1)
		if h.Flags()&tcpSYN != 0 {
			h.SetFlags(tcpSYN | tcpACK)
		} else {
			h.SetFlags(tcpACK)
		}
		h.SetChecksum(0)
		h.SetChecksum(packet.Checksum(t, sum))
	case packet.ProtoUDP:
		u := packet.UDP(t)
		if !u.Valid() {
			return nil, fmt.Errorf("trace: reply: UDP header cut short")
		}
		sp, dp := u.SrcPort(), u.DstPort()
		u.SetSrcPort(dp)
		u.SetDstPort(sp)
		u.SetChecksum(0)
		c := packet.Checksum(t, sum)
		if c == 0 {
			c = 0xffff
		}
		u.SetChecksum(c)
	case packet.ProtoICMP:
		if m := packet.ICMP(t); m.Valid() && m.Type() == packet.ICMPEchoRequest {
			m.SetTypeWithChecksumUpdate(packet.ICMPEchoReply)
		}
	case packet.ProtoICMPv6:
		if m := packet.ICMPv6(t); m.Valid() && m.Type() == packet.ICMPv6EchoRequest {
			m.SetTypeWithChecksumUpdate(packet.ICMPv6EchoReply)
		}
	}
	return f, nil
}
