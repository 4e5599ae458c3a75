package trace

import (
	"fmt"
	"net/netip"

	"github.com/uswitch-dev/uswitch/packet"
)

// describe6 is Describe's line for an IPv6 packet after head (the MACs).
func describe6(head string, ip packet.IPv6) string {
	if !ip.LenValid() {
		return head + " IPv6 (bad header)"
	}
	s, d := netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst())
	tail := fmt.Sprintf("hlim %d, payload length %d", ip.HopLimit(), ip.PayloadLen())
	proto, off, ok := ip.Upper()
	if !ok {
		return fmt.Sprintf("%s IPv6 %v > %v (bad extension headers), %s", head, s, d, tail)
	}
	l4 := ip[off : packet.IPv6HeaderLen+int(ip.PayloadLen())]
	switch proto {
	case packet.ProtoTCP, packet.ProtoUDP:
		name := "udp"
		if proto == packet.ProtoTCP {
			name = "tcp"
		}
		if pt := packet.Ports(l4); pt.Valid() {
			flags := ""
			if t := packet.TCP(l4); name == "tcp" && t.Valid() {
				flags = " [" + tcpFlags(t.Flags()) + "]"
			}
			return fmt.Sprintf("%s IPv6 %v.%d > %v.%d %s%s, %s", head, s, pt.Src(), d, pt.Dst(), name, flags, tail)
		}
	case packet.ProtoICMPv6:
		if m := packet.ICMPv6(l4); m.Valid() {
			return fmt.Sprintf("%s IPv6 %v > %v icmp6 type %d code %d, %s", head, s, d, m.Type(), m.Code(), tail)
		}
	case packet.ProtoFragment6:
		return fmt.Sprintf("%s IPv6 %v > %v fragment, %s", head, s, d, tail)
	}
	return fmt.Sprintf("%s IPv6 %v > %v next header %d, %s", head, s, d, proto, tail)
}
