package packet

import "encoding/binary"

// ICMPv6 types (RFC 4443, RFC 4861) and codes.
const (
	ICMPv6DstUnreach      = 1
	ICMPv6PacketTooBig    = 2
	ICMPv6TimeExceeded    = 3
	ICMPv6ParamProblem    = 4
	ICMPv6EchoRequest     = 128
	ICMPv6EchoReply       = 129
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
	ICMPv6Redirect        = 137
	ICMPv6CodeNoRoute     = 0
	ICMPv6CodeAdminProhib = 1
	ICMPv6CodeAddrUnreach = 3
	ICMPv6CodePortUnreach = 4
	ICMPv6HeaderLen       = 8
)

// ICMPv6 is a view over an ICMPv6 message (the upper-layer payload of an
// IPv6 packet). Its header is laid out as ICMPv4's; its checksum also
// covers the IPv6 pseudo header.
type ICMPv6 []byte

// Valid reports whether the message holds at least the 8-byte header.
func (m ICMPv6) Valid() bool { return len(m) >= ICMPv6HeaderLen }

// Type is the message type.
func (m ICMPv6) Type() uint8 { return m[0] }

// Code is the message code.
func (m ICMPv6) Code() uint8 { return m[1] }

// Checksum is the stored checksum.
func (m ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// ID is the echo identifier (bytes 4-5 of echo messages).
func (m ICMPv6) ID() uint16 { return binary.BigEndian.Uint16(m[4:6]) }

// IsEcho reports whether the message is an echo request or reply.
func (m ICMPv6) IsEcho() bool { return m[0] == ICMPv6EchoRequest || m[0] == ICMPv6EchoReply }

// IsError reports whether the message is an error that quotes a packet
// (types below 128, RFC 4443 section 2.1, that this view knows).
func (m ICMPv6) IsError() bool { return m[0] >= ICMPv6DstUnreach && m[0] <= ICMPv6ParamProblem }

// Quoted is the packet an error message quotes, as much as it holds.
func (m ICMPv6) Quoted() IPv6 { return IPv6(m[ICMPv6HeaderLen:]) }

// SetIDWithChecksumUpdate sets the echo identifier and adjusts the
// checksum by RFC 1624.
func (m ICMPv6) SetIDWithChecksumUpdate(id uint16) { ICMP(m).SetIDWithChecksumUpdate(id) }

// UpdateChecksumPseudoHeaderAddress6 adjusts the checksum for an address
// of the pseudo header changing from old to new.
func (m ICMPv6) UpdateChecksumPseudoHeaderAddress6(old, new [16]byte) {
	if old != new {
		binary.BigEndian.PutUint16(m[2:4], ChecksumUpdate128(m.Checksum(), old, new))
	}
}

// ComputeChecksum sets the checksum over the whole of m with the pseudo
// header of src and dst.
func (m ICMPv6) ComputeChecksum(src, dst [16]byte) {
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:4], Checksum(m, PseudoHeaderSum6(src, dst, ProtoICMPv6, uint32(len(m)))))
}
