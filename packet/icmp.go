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
