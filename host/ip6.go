package host

import (
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// deliver6 handles an IPv6 packet to one of the router's addresses (a
// gateway's, the uplink's, or a port's link-local address): it answers
// ICMPv6 echo, TCP with a reset and UDP with ICMPv6 port unreachable, as
// closed ports (no service listens on IPv6 here; the gateway's other ports
// are the host's through prerouting DNAT, as for IPv4), and drops the
// rest.
func (s *Stage) deliver6(in Ingress, frame []byte) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	proto, off, ok := ip.Upper()
	switch {
	case !ok:
		in.Stats.Drop(stats.BadIPHeader)
	case proto == packet.ProtoFragment6:
		in.Stats.Drop(stats.NotForwarded) // the host reassembles nothing
	case proto == packet.ProtoICMPv6:
		m := packet.ICMPv6(ip[off:])
		if !m.Valid() || !m.ChecksumValid(ip.Src(), ip.Dst()) {
			in.Stats.Drop(stats.BadChecksum)
			return
		}
		if m.Type() == packet.ICMPv6EchoRequest && m.Code() == 0 {
			s.echoReply6(frame, m)
		}
	case proto == packet.ProtoUDP:
		s.out.ICMPError6(frame, packet.ICMPv6DstUnreach, packet.ICMPv6CodePortUnrch)
	case proto == packet.ProtoTCP:
		s.Reset(frame) // a closed port, as IPv4's: Linux resets both
	default:
		in.Stats.Drop(stats.NotForwarded)
	}
}

// echoReply6 turns an ICMPv6 echo request m, in frame, into its reply in
// place and sends it: the addresses swap places, so the pseudo header's
// sum stays.
func (s *Stage) echoReply6(frame []byte, m packet.ICMPv6) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	src := ip.Src()
	ip.SetSrc(ip.Dst())
	ip.SetDst(src)
	ip.SetHopLimit(TTL)
	m.SetTypeWithChecksumUpdate(packet.ICMPv6EchoReply)
	s.out.Originate(frame)
}
