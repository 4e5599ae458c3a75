// Package gso owns software offloads for frames that carry a virtio-net
// header (packet.Offload): completing a transport checksum left partial,
// and cutting a GSO super-frame (TCP over IPv4 or IPv6, UDP L4) into the
// wire frames a NIC would have sent. The datapath uses it where an egress
// port cannot take offloaded frames: a TAP or packet socket without a
// virtio-net header, a pcap capture.
//
// Nothing here allocates: segments are built one at a time in a scratch
// buffer the caller owns.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package gso

import (
	"errors"
	"sync"

	"github.com/uswitch-dev/uswitch/packet"
)

var (
	// ErrMalformed is wrapped by the error for a frame whose offload
	// header does not fit its bytes, or asks for an offload gso does not
	// do (UFO, an unknown GSO type).
	ErrMalformed = errors.New("gso: malformed offload frame")
	// ErrScratch is returned when the scratch buffer cannot hold the
	// largest frame Segment would build.
	ErrScratch = errors.New("gso: scratch buffer too small")
)

// malformed says why a frame is malformed; it wraps ErrMalformed. Being a
// string constant it costs no allocation to return.
type malformed string

func (e malformed) Error() string { return ErrMalformed.Error() + ": " + string(e) }
func (malformed) Unwrap() error   { return ErrMalformed }

// Segment turns frame (an Ethernet frame, optionally with one 802.1Q or
// 802.1ad tag) described by o into the frames a wire would carry and calls
// emit with each, in order, stopping at emit's first error and returning it:
//
//   - o.Plain(): frame itself is emitted, not copied.
//   - o.NeedsCsum() without GSO: a copy of frame in scratch with the
//     checksum completed as Complete does; frame is not modified, as it
//     may be flooded to other ports too.
//   - GSO TCPv4 or TCPv6: one frame per o.GSOSize payload bytes (the last
//     one shorter), each with the Ethernet, IP and TCP headers of frame
//     except: the IPv4 total length, ID (the original, then +1 for each
//     segment, as Linux does) and header checksum, or the IPv6 payload
//     length; the TCP sequence number advanced by the payload offset; FIN
//     and PSH only on the last segment, CWR only on the first; and a TCP
//     checksum computed in full.
//   - GSO UDP L4: likewise, each segment with its own UDP length and full
//     UDP checksum (0 sent as 0xffff).
//
// A super-frame ends where frame ends: its IPv4 total length or IPv6
// payload length is not read (Linux does not read it either), but its IP
// packet must fit in that field, so 64 KiB at most (no jumbograms). One
// whose payload fits in one segment, or is empty, is emitted as one
// segment. IPv4 options are copied into every segment; IPv6 extension
// headers are not supported. Whether or not VNET_NEEDS_CSUM is set on a
// super-frame, its checksums are computed from scratch; when it is set,
// CsumStart and CsumOffset must point at the transport checksum. The
// GSOECN bit is ignored: CWR is kept on the first segment only either way.
//
// Any other offload (UFO, an unknown GSO type), or headers that do not fit
// the frame or the GSO type (an IPv4 fragment, another transport protocol,
// GSOSize 0...), return an error wrapping ErrMalformed before anything is
// emitted. The frames passed to emit are valid only during the call.
// scratch must hold the largest frame Segment builds: len(frame) for a
// checksum completion, min(len(frame), headers+o.GSOSize) for segments;
// otherwise Segment returns ErrScratch and emits nothing.
func Segment(frame []byte, o packet.Offload, scratch []byte, emit func([]byte) error) error {
	if o.Plain() {
		return emit(frame)
	}
	if !o.IsGSO() {
		if err := checkCsumOffsets(frame, o); err != nil {
			return err
		}
		if len(scratch) < len(frame) {
			return ErrScratch
		}
		f := scratch[:len(frame)]
		copy(f, frame)
		complete(f, o)
		return emit(f)
	}
	l, err := parse(frame, o)
	if err != nil {
		return err
	}
	payload := frame[l.hdr:]
	size := int(o.GSOSize)
	if len(scratch) < l.hdr+min(size, len(payload)) {
		return ErrScratch
	}
	for i, off := 0, 0; ; i++ {
		n := min(size, len(payload)-off)
		last := off+n == len(payload)
		seg := scratch[:l.hdr+n]
		copy(seg, frame[:l.hdr])
		copy(seg[l.hdr:], payload[off:off+n])
		l.fix(seg, i, off, last)
		if err := emit(seg); err != nil {
			return err
		}
		if last {
			return nil
		}
		off += n
	}
}

// Complete completes the partial checksum of frame in place, as a NIC
// would: the one's complement of the sum from CsumStart to the end of the
// frame, the checksum field included (it holds the pseudo-header sum),
// stored at CsumStart+CsumOffset, 0 as 0xffff (as Linux does). It is for a
// frame the caller owns alone, does nothing unless o.NeedsCsum(), and
// returns an error wrapping ErrMalformed when the checksum field is not
// within the frame or at an odd CsumOffset. It ignores GSO: a super-frame
// needs Segment.
func Complete(frame []byte, o packet.Offload) error {
	if !o.NeedsCsum() {
		return nil
	}
	if err := checkCsumOffsets(frame, o); err != nil {
		return err
	}
	complete(frame, o)
	return nil
}

func checkCsumOffsets(frame []byte, o packet.Offload) error {
	if int(o.CsumStart)+int(o.CsumOffset)+2 > len(frame) {
		return malformed("checksum offsets beyond the frame")
	}
	if o.CsumOffset%2 != 0 {
		// Summed out of step with the 16-bit words it sits among, the
		// field would get a checksum that never verifies.
		return malformed("checksum field at an odd offset")
	}
	return nil
}

// complete is Complete on offsets checked to fit frame.
func complete(frame []byte, o packet.Offload) {
	c := packet.Checksum(frame[o.CsumStart:], 0)
	if c == 0 {
		c = 0xffff
	}
	packet.PutChecksum(frame[int(o.CsumStart)+int(o.CsumOffset):], c)
}

// layout is what Segment learns from a super-frame's headers.
type layout struct {
	l3, l4, hdr int   // offsets of the IP and transport headers and of the payload
	ipv4        bool  // else IPv6
	proto       uint8 // packet.ProtoTCP or packet.ProtoUDP
	id          uint16
	seq         uint32
	pseudo      uint32 // the pseudo-header sum but for the transport length
}

// parse checks the headers of a GSO super-frame against o.
func parse(frame []byte, o packet.Offload) (layout, error) {
	var l layout
	switch o.Type() {
	case packet.GSOTCPv4, packet.GSOTCPv6:
		l.proto = packet.ProtoTCP
	case packet.GSOUDPL4:
		l.proto = packet.ProtoUDP
	default:
		return l, malformed("unsupported GSO type")
	}
	if o.GSOSize == 0 {
		return l, malformed("GSO size 0")
	}
	eth := packet.Ethernet(frame)
	if !eth.Valid() {
		return l, malformed("Ethernet header truncated")
	}
	l.l3 = packet.EthernetHeaderLen
	etherType := eth.EtherType()
	if etherType == packet.EtherTypeVLAN || etherType == packet.EtherTypeQinQ {
		l.l3 += packet.VLANTagLen
		if len(frame) < l.l3 {
			return l, malformed("VLAN tag truncated")
		}
		etherType = eth.TaggedEtherType()
	}
	maxLen := 0xffff // of the IP packet, as its length field can say
	switch {
	case etherType == packet.EtherTypeIPv4 && o.Type() != packet.GSOTCPv6:
		ip := packet.IPv4(frame[l.l3:])
		if !ip.HeaderFits() {
			return l, malformed("IPv4 header truncated")
		}
		if ip.IsFragment() {
			return l, malformed("IPv4 fragment")
		}
		if ip.Protocol() != l.proto {
			return l, malformed("transport protocol does not match the GSO type")
		}
		l.ipv4 = true
		l.l4 = l.l3 + ip.HeaderLen()
		l.id = ip.ID()
		l.pseudo = packet.PseudoHeaderSum(ip.Src(), ip.Dst(), l.proto, 0)
	case etherType == packet.EtherTypeIPv6 && o.Type() != packet.GSOTCPv4:
		ip := packet.IPv6(frame[l.l3:])
		if !ip.Valid() {
			return l, malformed("IPv6 header truncated")
		}
		if ip.NextHeader() != l.proto {
			return l, malformed("transport protocol does not match the GSO type")
		}
		l.l4 = l.l3 + packet.IPv6HeaderLen
		maxLen += packet.IPv6HeaderLen
		l.pseudo = uint32(packet.Sum(ip.Addrs(), 0)) + uint32(l.proto)
	default:
		return l, malformed("network protocol does not match the GSO type")
	}
	csumOffset := packet.UDPChecksumOffset
	if l.proto == packet.ProtoTCP {
		t := packet.TCP(frame[l.l4:])
		if !t.Valid() {
			return l, malformed("TCP header truncated")
		}
		l.hdr = l.l4 + t.HeaderLen()
		l.seq = t.Seq()
		csumOffset = packet.TCPChecksumOffset
	} else {
		if len(frame)-l.l4 < packet.UDPHeaderLen {
			return l, malformed("UDP header truncated")
		}
		l.hdr = l.l4 + packet.UDPHeaderLen
	}
	if o.NeedsCsum() && (int(o.CsumStart) != l.l4 || int(o.CsumOffset) != csumOffset) {
		return l, malformed("checksum offsets do not point at the transport checksum")
	}
	if len(frame)-l.l3 > maxLen {
		return l, malformed("super-frame longer than an IP packet")
	}
	return l, nil
}

// fix rewrites the headers copied into seg, segment i of a super-frame
// holding the payload from off, for it to go on the wire.
func (l *layout) fix(seg []byte, i, off int, last bool) {
	ipLen := len(seg) - l.l3
	if l.ipv4 {
		ip := packet.IPv4(seg[l.l3:])
		ip.SetTotalLen(uint16(ipLen))
		ip.SetID(l.id + uint16(i))
		ip.SetHeaderChecksum()
	} else {
		packet.IPv6(seg[l.l3:]).SetPayloadLen(uint16(ipLen - packet.IPv6HeaderLen))
	}
	pseudo := l.pseudo + uint32(len(seg)-l.l4)
	if l.proto == packet.ProtoUDP {
		u := packet.UDP(seg[l.l4:])
		u.SetLength(uint16(len(u)))
		u.SetChecksum(0)
		c := packet.Checksum(u, pseudo)
		if c == 0 {
			c = 0xffff
		}
		u.SetChecksum(c)
		return
	}
	t := packet.TCP(seg[l.l4:])
	t.SetSeq(l.seq + uint32(off))
	flags := t.Flags()
	if i > 0 {
		flags &^= packet.TCPCwr
	}
	if !last {
		flags &^= packet.TCPFin | packet.TCPPsh
	}
	t.SetFlags(flags)
	t.SetChecksum(0)
	t.SetChecksum(packet.Checksum(t, pseudo))
}

// MaxFrame is the size of Wire's pooled buffers: the largest frame a
// super-frame's segments or checksum completion can need (a 64 KiB IP
// packet, an Ethernet header and a tag, rounded up).
const MaxFrame = 65536 + 64

var scratch = sync.Pool{New: func() any { b := make([]byte, MaxFrame); return &b }}

// Wire is Segment with a scratch buffer of its own, from a pool: what a
// device or capture that takes only wire frames calls. It allocates
// nothing once the pool is warm.
func Wire(frame []byte, o packet.Offload, emit func([]byte) error) error {
	if o.Plain() {
		return emit(frame)
	}
	bp := scratch.Get().(*[]byte)
	defer scratch.Put(bp)
	return Segment(frame, o, *bp, emit)
}
