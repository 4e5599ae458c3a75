package packet

import "encoding/binary"

// ICMPv6 types and codes (RFC 4443, RFC 4861) the router sends and
// answers.
const (
	ICMPv6DstUnreach     = 1
	ICMPv6PacketTooBig   = 2
	ICMPv6TimeExceeded   = 3
	ICMPv6ParamProblem   = 4
	ICMPv6EchoRequest    = 128
	ICMPv6EchoReply      = 129
	ICMPv6RouterSolicit  = 133
	ICMPv6RouterAdvert   = 134
	ICMPv6NeighSolicit   = 135
	ICMPv6NeighAdvert    = 136
	ICMPv6Redirect       = 137
	ICMPv6CodeNoRoute    = 0 // destination unreachable: no route
	ICMPv6CodeAdmin      = 1 // destination unreachable: administratively prohibited
	ICMPv6CodeAddrUnrch  = 3 // destination unreachable: address unreachable
	ICMPv6CodePortUnrch  = 4 // destination unreachable: port unreachable
	ICMPv6CodeHopLimit   = 0 // time exceeded: hop limit exceeded in transit
	ICMPv6CodeReassembly = 1 // time exceeded: fragment reassembly time exceeded
)

// ICMPv6 is a view over an ICMPv6 message (the upper-layer payload of an
// IPv6 packet). Its header has ICMP's layout; its checksum covers the IPv6
// pseudo header too.
type ICMPv6 []byte

// Valid reports whether the message holds at least the 8-byte header.
func (m ICMPv6) Valid() bool { return len(m) >= ICMPHeaderLen }

// Type is the message type.
func (m ICMPv6) Type() uint8 { return m[0] }

// Code is the message code.
func (m ICMPv6) Code() uint8 { return m[1] }

// Checksum is the stored checksum.
func (m ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// ID is the echo identifier (bytes 4-5 of echo messages).
func (m ICMPv6) ID() uint16 { return ICMP(m).ID() }

// IsError reports whether the type is an error message (types below 128,
// RFC 4443 2.1), which quotes a packet.
func (m ICMPv6) IsError() bool { return m.Type() < 128 }

// ChecksumValid reports whether the checksum is right for a message sent
// from src to dst.
func (m ICMPv6) ChecksumValid(src, dst [16]byte) bool {
	return Checksum(m, PseudoHeaderSum6(src, dst, ProtoICMPv6, uint32(len(m)))) == 0
}

// SetChecksum computes the checksum of the whole message sent from src to
// dst.
func (m ICMPv6) SetChecksum(src, dst [16]byte) {
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:4], Checksum(m, PseudoHeaderSum6(src, dst, ProtoICMPv6, uint32(len(m)))))
}

// Encode writes f into the header with a zero checksum: set it with
// SetChecksum once the body is in place.
func (m ICMPv6) Encode(f *ICMPFields) { ICMP(m).Encode(f) }

// SetTypeWithChecksumUpdate sets the type and adjusts the checksum by
// RFC 1624.
func (m ICMPv6) SetTypeWithChecksumUpdate(t uint8) { ICMP(m).SetTypeWithChecksumUpdate(t) }

// SetIDWithChecksumUpdate sets the echo identifier and adjusts the
// checksum by RFC 1624.
func (m ICMPv6) SetIDWithChecksumUpdate(id uint16) { ICMP(m).SetIDWithChecksumUpdate(id) }

// UpdateChecksumPseudoHeaderAddress adjusts the checksum for an address
// of the pseudo header changing from old to new (NAT66 of a message).
func (m ICMPv6) UpdateChecksumPseudoHeaderAddress(old, new [16]byte) {
	if old != new {
		binary.BigEndian.PutUint16(m[2:4], ChecksumUpdate128(m.Checksum(), old, new))
	}
}
