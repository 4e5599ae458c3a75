package packet

import "encoding/binary"

// ICMPv4 types and codes the router sends and answers.
const (
	ICMPEchoReply       = 0
	ICMPUnreachable     = 3
	ICMPEchoRequest     = 8
	ICMPTimeExceeded    = 11
	ICMPCodeNetUnreach  = 0
	ICMPCodeHostUnreach = 1
	ICMPCodePortUnreach = 3
	ICMPCodeFragNeeded  = 4
	ICMPHeaderLen       = 8
)

// ICMP is a view over an ICMPv4 message (the IPv4 payload).
type ICMP []byte

// Valid reports whether the message holds at least the 8-byte header.
func (m ICMP) Valid() bool { return len(m) >= ICMPHeaderLen }

// Type is the message type.
func (m ICMP) Type() uint8 { return m[0] }

// Code is the message code.
func (m ICMP) Code() uint8 { return m[1] }

// Checksum is the stored checksum over the whole message.
func (m ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(m[2:4]) }

// SetChecksum recomputes the checksum from scratch.
func (m ICMP) SetChecksum() {
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint16(m[2:4], Checksum(m, 0))
}

// ID is the echo identifier (bytes 4-5 of echo messages).
func (m ICMP) ID() uint16 { return binary.BigEndian.Uint16(m[4:6]) }

// IsError reports whether the type is an error that quotes a datagram.
func (m ICMP) IsError() bool {
	switch m.Type() {
	case ICMPUnreachable, ICMPTimeExceeded, 4 /* source quench */, 5 /* redirect */, 12 /* parameter problem */ :
		return true
	}
	return false
}

// SetTypeWithChecksumUpdate sets the type and adjusts the checksum by
// RFC 1624.
func (m ICMP) SetTypeWithChecksumUpdate(t uint8) {
	old := binary.BigEndian.Uint16(m[0:2])
	m[0] = t
	binary.BigEndian.PutUint16(m[2:4], ChecksumUpdate16(m.Checksum(), old, binary.BigEndian.Uint16(m[0:2])))
}

// SetIDWithChecksumUpdate sets the echo identifier and adjusts the
// checksum by RFC 1624.
func (m ICMP) SetIDWithChecksumUpdate(id uint16) {
	old := m.ID()
	if old == id {
		return
	}
	binary.BigEndian.PutUint16(m[4:6], id)
	binary.BigEndian.PutUint16(m[2:4], ChecksumUpdate16(m.Checksum(), old, id))
}

// ICMPFields are the fields Encode writes into an ICMP header; Rest is its
// second word (echo id and sequence, or the next-hop MTU of a
// fragmentation-needed error in its low half).
type ICMPFields struct {
	Type, Code uint8
	Rest       uint32
}

// Encode writes f into the header with a zero checksum: set it with
// SetChecksum once the body is in place.
func (m ICMP) Encode(f *ICMPFields) {
	m[0], m[1] = f.Type, f.Code
	m[2], m[3] = 0, 0
	binary.BigEndian.PutUint32(m[4:8], f.Rest)
}
