package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/uswitch-dev/uswitch/packet"
)

// Packet describes a synthetic IPv4 packet to trace.
type Packet struct {
	SrcMAC, DstMAC packet.MAC
	Src, Dst       netip.Addr
	Proto          string // tcp, udp or icmp (echo request)
	Sport, Dport   uint16
	SYN            bool // a TCP SYN (else ACK)
	Len            int  // IP length (0: headers only, or what the payload needs)
	TTL            uint8
}

// Build returns the Ethernet frame of p, with valid checksums.
func (p Packet) Build() ([]byte, error) {
	if !p.Src.Is4() || !p.Dst.Is4() {
		return nil, fmt.Errorf("trace: source %v and destination %v must be IPv4", p.Src, p.Dst)
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
	default:
		return nil, fmt.Errorf("trace: protocol %q: want tcp, udp or icmp", p.Proto)
	}
	n := packet.IPv4MinHeaderLen + l4
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
	e.SetEtherType(packet.EtherTypeIPv4)
	ip := f[packet.EthernetHeaderLen:]
	src, dst := p.Src.As4(), p.Dst.As4()
	packet.PutIPv4Header(ip, uint16(n), 1, p.TTL, proto, src, dst)
	t := ip[packet.IPv4MinHeaderLen:]
	switch proto {
	case packet.ProtoTCP:
		binary.BigEndian.PutUint16(t[0:2], p.Sport)
		binary.BigEndian.PutUint16(t[2:4], p.Dport)
		binary.BigEndian.PutUint32(t[4:8], 1)
		t[12] = 5 << 4
		t[13] = 0x10 // ACK
		if p.SYN {
			t[13] = 0x02
		} else {
			binary.BigEndian.PutUint32(t[8:12], 1)
		}
		binary.BigEndian.PutUint16(t[14:16], 64240)
		binary.BigEndian.PutUint16(t[16:18], packet.Checksum(t, packet.PseudoHeaderSum(src, dst, proto, uint16(len(t)))))
	case packet.ProtoUDP:
		binary.BigEndian.PutUint16(t[0:2], p.Sport)
		binary.BigEndian.PutUint16(t[2:4], p.Dport)
		binary.BigEndian.PutUint16(t[4:6], uint16(len(t)))
		sum := packet.Checksum(t, packet.PseudoHeaderSum(src, dst, proto, uint16(len(t))))
		if sum == 0 {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(t[6:8], sum)
	default:
		t[0] = packet.ICMPEchoRequest
		binary.BigEndian.PutUint16(t[4:6], p.Sport) // the echo id
		binary.BigEndian.PutUint16(t[6:8], 1)
		packet.ICMP(t).SetChecksum()
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

// Reply returns the answer to an IPv4 frame as its destination would send
// it: addresses, ports and MACs swapped, an echo request answered with an
// echo reply, a SYN with a SYN-ACK, TTL 64, checksums recomputed.
func Reply(frame []byte) ([]byte, error) {
	e := packet.Ethernet(frame)
	if !e.Valid() || e.EtherType() != packet.EtherTypeIPv4 || !packet.IPv4(e.Payload()).Valid() {
		return nil, fmt.Errorf("trace: reply: not an IPv4 frame")
	}
	f := append([]byte(nil), frame...)
	e = packet.Ethernet(f)
	src, dst := e.Src(), e.Dst()
	e.SetSrc(dst)
	e.SetDst(src)
	ip := packet.IPv4(e.Payload())
	s, d := ip.Src(), ip.Dst()
	ip.SetSrc(d)
	ip.SetDst(s)
	ip.SetTTL(64)
	ip.SetHeaderChecksum()
	t := ip.Payload()
	switch ip.Protocol() {
	case packet.ProtoTCP, packet.ProtoUDP:
		if len(t) < 8 {
			return nil, fmt.Errorf("trace: reply: transport header cut short")
		}
		t[0], t[1], t[2], t[3] = t[2], t[3], t[0], t[1]
		sumAt := 6
		if ip.Protocol() == packet.ProtoTCP {
			if !packet.TCP(t).Valid() {
				return nil, fmt.Errorf("trace: reply: TCP header cut short")
			}
			seq := binary.BigEndian.Uint32(t[4:8])
			if t[13]&0x02 != 0 {
				t[13] = 0x12 // SYN-ACK
			} else {
				t[13] = 0x10
			}
			binary.BigEndian.PutUint32(t[8:12], seq+1)
			sumAt = 16
		}
		t[sumAt], t[sumAt+1] = 0, 0
		sum := packet.Checksum(t, packet.PseudoHeaderSum(d, s, ip.Protocol(), uint16(len(t))))
		if sum == 0 && ip.Protocol() == packet.ProtoUDP {
			sum = 0xffff
		}
		binary.BigEndian.PutUint16(t[sumAt:], sum)
	case packet.ProtoICMP:
		if m := packet.ICMP(t); m.Valid() && m.Type() == packet.ICMPEchoRequest {
			t[0] = packet.ICMPEchoReply
			m.SetChecksum()
		}
	}
	return f, nil
}
