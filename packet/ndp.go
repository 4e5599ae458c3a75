package packet

// Neighbour discovery (RFC 4861): the solicitation and advertisement
// messages the router's neighbour cache sends and reads.
const (
	// NDPLen is the length of a neighbour solicitation or advertisement
	// without options: the ICMPv6 header and the target address.
	NDPLen = ICMPHeaderLen + 16
	// NDPFrameLen is the length of the frames PutNS and PutNA build: one
	// link-layer address option.
	NDPFrameLen = EthernetHeaderLen + IPv6HeaderLen + NDPLen + 8
	// NDPHopLimit is the hop limit every NDP message has (RFC 4861 7.1).
	NDPHopLimit = 255

	NDPOptSourceLink = 1 // source link-layer address option
	NDPOptTargetLink = 2 // target link-layer address option
)

// NDP is a view over a neighbour solicitation or advertisement (an ICMPv6
// message of type 135 or 136, whose type and code the ICMPv6 view reads).
type NDP []byte

// Valid reports whether the message holds its header and target address.
func (m NDP) Valid() bool { return len(m) >= NDPLen }

// Flags are an advertisement's R, S and O flags (NAFlag...).
func (m NDP) Flags() uint8 { return m[4] }

// Target is the target address.
func (m NDP) Target() [16]byte { return [16]byte(m[8:24]) }

// The flags of an advertisement (RFC 4861 4.4): from a router, solicited,
// override.
const (
	NAFlagRouter    = 0x80
	NAFlagSolicited = 0x40
	NAFlagOverride  = 0x20
)

// LinkAddr returns the link-layer address of the option of type opt
// (NDPOptSourceLink or NDPOptTargetLink). found says whether there was
// one; ok is false when the options do not parse (RFC 4861 says to drop
// the message then), or such an option is not an Ethernet address.
func (m NDP) LinkAddr(opt uint8) (mac MAC, found, ok bool) {
	opts := m[NDPLen:]
	for len(opts) > 0 {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return MAC{}, false, false
		}
		n := int(opts[1]) * 8
		if opts[0] == opt {
			if n != 8 {
				return MAC{}, false, false
			}
			mac, found = MAC(opts[2:8]), true
		}
		opts = opts[n:]
	}
	return mac, found, true
}

// SolicitedNode returns the solicited-node multicast address of a
// (RFC 4291 2.7.1): ff02::1:ff and a's last 24 bits.
func SolicitedNode(a [16]byte) [16]byte {
	return [16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: a[13], 14: a[14], 15: a[15]}
}

// MulticastMAC6 returns the Ethernet address an IPv6 multicast address is
// sent to (RFC 2464 7): 33:33 and its last 32 bits.
func MulticastMAC6(a [16]byte) MAC { return MAC{0x33, 0x33, a[12], a[13], a[14], a[15]} }

// AllNodes6 is ff02::1, where unsolicited advertisements go.
var AllNodes6 = [16]byte{0xff, 0x02, 15: 1}

// PutNS writes into b (at least NDPFrameLen bytes) a neighbour
// solicitation for target from src (with the source link-layer address
// option naming srcMAC) to dst, sent to ethDst, and returns the frame.
func PutNS(b []byte, ethDst, srcMAC MAC, src, dst, target [16]byte) []byte {
	return putND(b, ICMPv6NeighSolicit, 0, NDPOptSourceLink, ethDst, srcMAC, src, dst, target)
}

// PutNA writes into b (at least NDPFrameLen bytes) a neighbour
// advertisement for target with flags (NAFlag...) and the target
// link-layer address option naming srcMAC, from src to dst, sent to
// ethDst, and returns the frame.
func PutNA(b []byte, flags uint8, ethDst, srcMAC MAC, src, dst, target [16]byte) []byte {
	return putND(b, ICMPv6NeighAdvert, flags, NDPOptTargetLink, ethDst, srcMAC, src, dst, target)
}

func putND(b []byte, typ, flags, opt uint8, ethDst, srcMAC MAC, src, dst, target [16]byte) []byte {
	f := b[:NDPFrameLen]
	e := Ethernet(f)
	e.SetDst(ethDst)
	e.SetSrc(srcMAC)
	e.SetEtherType(EtherTypeIPv6)
	ip := IPv6(f[EthernetHeaderLen:])
	ip.Encode(&IPv6Fields{PayloadLen: NDPLen + 8, NextHeader: ProtoICMPv6, HopLimit: NDPHopLimit, Src: src, Dst: dst})
	m := ICMPv6(ip[IPv6HeaderLen:])
	m.Encode(&ICMPFields{Type: typ, Rest: uint32(flags) << 24})
	copy(m[8:24], target[:])
	m[24], m[25] = opt, 1
	copy(m[26:32], srcMAC[:])
	m.SetChecksum(src, dst)
	return f
}
