package vswitch

import (
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// Port security beyond source addresses: tags, DHCP snooping, IPv6 (RA
// guard and source guard), and the link-local group addresses no bridge
// forwards.

// EtherTypes of tagged frames.
const (
	etherTypeQinQ   = 0x88a8 // 802.1ad service tag
	etherTypeQinQv1 = 0x9100 // the pre-standard double tag
)

// Ports and ICMPv6 types port security looks at beyond packet's.
const (
	dhcpServerPort   = 67
	dhcp6ServerPort  = 547
	icmp6MLDReport   = 131
	icmp6Renumbering = 138
	icmp6MLDv2Report = 143
)

// isTagged reports whether an EtherType is a VLAN tag (802.1Q, 802.1ad or
// the older double tag): an endpoint has no business tagging, since a tag
// would let it reach VLANs (and FDB keys) it does not belong to, and the
// inner source would go unchecked.
func isTagged(t uint16) bool {
	return t == packet.EtherTypeVLAN || t == etherTypeQinQ || t == etherTypeQinQv1
}

// isLinkLocalGroup reports whether dst is one of the IEEE 802.1D reserved
// group addresses 01:80:c2:00:00:00 to 0f (STP BPDUs, LACP, LLDP,
// 802.1X), which a bridge consumes and never forwards.
func isLinkLocalGroup(dst packet.MAC) bool {
	return dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 && dst[5]&0xf0 == 0
}

// dhcpServer reports whether an IPv4 packet is a DHCP server message (UDP
// from port 67): offers and acks only a server sends, so an endpoint that
// sends them is a rogue server (DHCP snooping, as CNI's and OVS's do).
func dhcpServer(ip packet.IPv4) bool {
	if ip.Protocol() != packet.ProtoUDP || ip.FragmentOffset() != 0 || len(ip) < ip.HeaderLen()+4 {
		return false
	}
	return packet.UDP(ip[ip.HeaderLen():]).SrcPort() == dhcpServerPort
}

// checkIPv6 applies port security to an IPv6 packet b from the secure
// port p: its source must be the endpoint's link-local address or its
// configured IPv6 address (IP6, when it has one), or :: for duplicate
// address detection and MLD; router advertisements, redirects, router
// renumbering and DHCPv6 server messages are dropped (RA guard, RFC 6105),
// and so are a neighbour advertisement for an address not the endpoint's
// and neighbour discovery messages whose link-layer address options name
// another MAC.
func (p *Port) checkIPv6(b []byte) (stats.Reason, bool) {
	ip := packet.IPv6(b)
	if !ip.LenValid() {
		return stats.Truncated, false
	}
	hi, lo := ip.SrcWords()
	unspecified := hi|lo == 0
	if !p.own6(hi, lo) && !unspecified {
		return stats.SpoofedIPv6, false
	}
	// The upper-layer header, past the extension headers (at most eight,
	// as far as a sane packet has them).
	next, off := ip.NextHeader(), packet.IPv6HeaderLen
	if packet.IsIPv6Ext(next) {
		var ok bool
		if next, off, ok = ip.Upper(); !ok {
			return stats.Truncated, false
		}
	}
	b = b[:packet.IPv6HeaderLen+int(ip.PayloadLen())] // without Ethernet padding
	switch next {
	case packet.ProtoFragment6:
		// A later fragment: its upper header is in the first one,
		// checked there; from :: nothing is fragmented.
		if unspecified {
			return stats.SpoofedIPv6, false
		}
		return 0, true
	case packet.ProtoICMPv6:
		if len(b) < off+4 {
			return stats.Truncated, false
		}
		switch typ := b[off]; typ {
		case packet.ICMPv6RouterAdvert, packet.ICMPv6Redirect, icmp6Renumbering:
			return stats.RAGuard, false
		case packet.ICMPv6NeighAdvert:
			if len(b) < off+24 {
				return stats.Truncated, false
			}
			if !p.own6(packet.Words6([16]byte(b[off+8:off+24]))) || !p.ndOptionsOwn(b[off+24:]) {
				return stats.SpoofedND, false
			}
		case packet.ICMPv6NeighSolicit:
			if len(b) < off+24 {
				return stats.Truncated, false
			}
			if !p.ndOptionsOwn(b[off+24:]) {
				return stats.SpoofedND, false
			}
			return 0, true // DAD sends it from ::
		case packet.ICMPv6RouterSolicit:
			if len(b) >= off+8 && !p.ndOptionsOwn(b[off+8:]) {
				return stats.SpoofedND, false
			}
		case icmp6MLDReport, icmp6MLDv2Report:
			return 0, true // what an address not yet configured sends
		}
	case packet.ProtoUDP:
		if len(b) >= off+2 && packet.UDP(b[off:]).SrcPort() == dhcp6ServerPort {
			return stats.DHCPServer, false
		}
	}
	if unspecified {
		return stats.SpoofedIPv6, false
	}
	return 0, true
}

// own6 reports whether the address hi, lo (packet.Words6) is the
// endpoint's: its link-local address or its configured IPv6 address (IP6,
// when it has one). Word compares in registers: no address is built or
// copied on the stack for a frame.
func (p *Port) own6(hi, lo uint64) bool {
	h, l := p.MAC.LinkLocal6Words()
	i, j := packet.Words6(p.IP6)
	return hi == h && lo == l || hi == i && lo == j && i|j != 0
}

// ndOptionsOwn reports whether the source and target link-layer address
// options of a neighbour discovery message (RFC 4861 4.6.1) name the
// port's own MAC, so that an endpoint cannot map an address to another
// station's MAC in its neighbours' caches. Options that do not parse are
// refused as well.
func (p *Port) ndOptionsOwn(opts []byte) bool {
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return false
		}
		n := int(opts[1]) * 8
		if (opts[0] == 1 || opts[0] == 2) && (n != 8 || packet.MAC(opts[2:8]) != p.MAC) {
			return false
		}
		opts = opts[n:]
	}
	return true
}
