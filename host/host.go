// Package host is the host stage: what becomes of a packet addressed to one
// of the router's own addresses (a network's gateway, or the uplink
// address) once the router has decided it is local, like gVisor's
// transport demultiplexer. It answers ICMP echo, resets TCP segments and
// answers port unreachable for datagrams nobody serves, and hands the rest
// to the services registered in its table by protocol and port: a UDP
// handler gets each datagram, a TCP handler a byte stream from the stage's
// small TCP responder (tcp.go). The embedded DNS registers UDP and TCP
// port 53.
//
// The stage runs on the datapath goroutine that read the packet and sends
// what it makes through an Output (the router, which routes it like any
// packet it originates); replies may also come later from any goroutine.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package host

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// TTL is the time to live of the packets the host sends.
const TTL = 64

// maxPacket is the size of the stage's pooled buffers: a 64 KiB IPv4
// packet with its Ethernet header.
const maxPacket = 65536 + packet.EthernetHeaderLen

// Output is where the host's packets go: the router.
type Output interface {
	// Originate routes an IPv4 or IPv6 packet the host sends. The packet starts
	// after packet.EthernetHeaderLen bytes of room in frame; Originate
	// does not keep frame.
	Originate(frame []byte)
	// ICMPError answers the plain packet in frame with an ICMP error of
	// type typ and code code, within the router's rate limit and the
	// rules of RFC 1122 (no error about an error, a fragment, ...).
	ICMPError(frame []byte, typ, code uint8)
	// ICMPError6 is ICMPError for an IPv6 packet and an ICMPv6 error
	// (RFC 4443's rules).
	ICMPError6(frame []byte, typ, code uint8)
}

// Ingress is where a local packet came in: a router port.
type Ingress struct {
	Network string      // the ingress network's name; "" for the uplink
	Addr    [4]byte     // the ingress port's own address
	Stats   *stats.Port // its counters, for drops
}

// UDPHandler serves one UDP port of the router's addresses.
type UDPHandler interface {
	// ServeUDP handles a datagram from src:sport to in.Addr. It must not
	// block: it calls reply with each response payload (sent back from
	// the port it serves to src:sport) before it returns or later, from
	// any goroutine, and does not keep payload. It returns false, having
	// done nothing, when it does not serve in: the stage then answers port
	// unreachable as for a closed port.
	ServeUDP(in Ingress, src [4]byte, sport uint16, payload []byte, reply func(payload []byte)) bool
}

// key is an entry of the handler table.
type key struct {
	proto uint8
	port  uint16
}

// Stage is the host stage of one router. Handlers are registered before
// traffic flows; Deliver may then be called from any goroutine.
type Stage struct {
	out   Output
	clock clock.Clock
	udp   map[key]UDPHandler
	tcp   map[key]StreamHandler
	conns conns
	bufs  sync.Pool
	ipID  atomic.Uint32
}

// New returns a stage with no services that sends through out.
func New(out Output, clk clock.Clock) *Stage {
	s := &Stage{out: out, clock: clk, udp: map[key]UDPHandler{}, tcp: map[key]StreamHandler{}}
	s.conns.m = map[connKey]*Conn{}
	s.bufs.New = func() any { b := make([]byte, maxPacket); return &b }
	return s
}

// HandleUDP registers h for UDP port port, replacing what was there.
func (s *Stage) HandleUDP(port uint16, h UDPHandler) {
	s.udp[key{packet.ProtoUDP, port}] = h
}

// HandleTCP registers h for TCP port port, replacing what was there.
func (s *Stage) HandleTCP(port uint16, h StreamHandler) {
	s.tcp[key{packet.ProtoTCP, port}] = h
}

// Deliver handles a plain IPv4 or IPv6 frame (Ethernet header, valid IP
// header without padding) addressed to one of the router's addresses that
// came in at in. The frame may be rewritten in place; it is not kept.
func (s *Stage) Deliver(in Ingress, frame []byte) {
	if frame[packet.EthernetHeaderLen]>>4 == 6 {
		s.deliver6(in, frame)
		return
	}
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	if ip.IsFragment() {
		in.Stats.Drop(stats.NotForwarded) // the host reassembles nothing
		return
	}
	switch ip.Protocol() {
	case packet.ProtoICMP:
		m := packet.ICMP(ip.Payload())
		if !m.Valid() || packet.Checksum(m, 0) != 0 {
			in.Stats.Drop(stats.BadChecksum)
			return
		}
		if m.Type() == packet.ICMPEchoRequest && m.Code() == 0 {
			s.echoReply(frame)
		}
	case packet.ProtoUDP:
		if !s.serveUDP(in, frame) {
			s.out.ICMPError(frame, packet.ICMPUnreachable, packet.ICMPCodePortUnreach)
		}
	case packet.ProtoTCP:
		s.serveTCP(in, frame)
	default:
		s.out.ICMPError(frame, packet.ICMPUnreachable, 2 /* protocol unreachable */)
	}
}

// serveUDP hands a datagram to its port's handler and reports whether one
// took it. Only datagrams to the ingress port's own address are served.
func (s *Stage) serveUDP(in Ingress, frame []byte) bool {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	u := packet.UDP(ip.Payload())
	if len(u) < packet.UDPHeaderLen || ip.Dst() != in.Addr {
		return false
	}
	dport := u.DstPort()
	h := s.udp[key{packet.ProtoUDP, dport}]
	if h == nil {
		return false
	}
	if !u.Valid() {
		in.Stats.Drop(stats.Truncated)
		return true
	}
	local, src, sport := in.Addr, ip.Src(), u.SrcPort()
	return h.ServeUDP(in, src, sport, u.Payload(), func(payload []byte) {
		s.sendUDP(local, dport, src, sport, payload)
	})
}

// sendUDP sends payload in a UDP datagram from src:sport to dst:dport.
// Any goroutine may call it: the frame is built in a buffer of its own.
func (s *Stage) sendUDP(src [4]byte, sport uint16, dst [4]byte, dport uint16, payload []byte) {
	ulen := packet.UDPHeaderLen + len(payload)
	if packet.IPv4MinHeaderLen+ulen > 0xffff {
		return
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	f := (*bp)[:packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+ulen]
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	ip.Encode(&packet.IPv4Fields{TotalLen: uint16(len(ip)), ID: s.nextID(), TTL: TTL, Protocol: packet.ProtoUDP, Src: src, Dst: dst})
	u := packet.UDP(ip[packet.IPv4MinHeaderLen:])
	u.Encode(&packet.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(ulen)})
	copy(u[packet.UDPHeaderLen:], payload)
	u.ComputeChecksum(src, dst)
	s.out.Originate(f)
}

// echoReply turns an echo request into its reply in place and sends it.
func (s *Stage) echoReply(frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	src, dst := ip.Src(), ip.Dst()
	ip.SetSrc(dst)
	ip.SetDst(src)
	ip.SetTTL(TTL)
	ip.SetHeaderChecksum()
	packet.ICMP(ip.Payload()).SetTypeWithChecksumUpdate(packet.ICMPEchoReply)
	s.out.Originate(frame)
}

// Reset answers the TCP segment in frame (a plain IPv4 or IPv6 frame)
// with RST, as RFC 793 says for a segment to a closed port and as Linux
// does for both families; the RST comes from the segment's destination.
// The router also calls it for a rejected IPv4 segment.
func (s *Stage) Reset(frame []byte) {
	src, dst, t := segmentOf(frame)
	if !t.Valid() || t.Flags()&packet.TCPRst != 0 {
		return
	}
	sport, dport := t.DstPort(), t.SrcPort()
	if t.Flags()&packet.TCPAck != 0 {
		s.sendSegment(dst, src, sport, dport, t.Ack(), 0, packet.TCPRst, nil)
		return
	}
	seglen := uint32(len(t) - t.HeaderLen())
	if t.Flags()&packet.TCPSyn != 0 {
		seglen++
	}
	if t.Flags()&packet.TCPFin != 0 {
		seglen++
	}
	s.sendSegment(dst, src, sport, dport, 0, t.Seq()+seglen, packet.TCPRst|packet.TCPAck, nil)
}

// segmentOf returns the addresses of a plain IPv4 or IPv6 frame and its
// TCP header (nil when it carries none: the IPv6 extension headers
// walked).
func segmentOf(frame []byte) (src, dst netip.Addr, t packet.TCP) {
	if frame[packet.EthernetHeaderLen]>>4 == 6 {
		ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
		if proto, off, ok := ip.Upper(); ok && proto == packet.ProtoTCP {
			t = packet.TCP(ip[off:])
		}
		return netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst()), t
	}
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	if ip.Protocol() == packet.ProtoTCP {
		t = packet.TCP(ip.Payload())
	}
	return netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst()), t
}

// sendTCP builds and sends one TCP segment of the responder's (IPv4).
// Any goroutine may call it.
func (s *Stage) sendTCP(src, dst [4]byte, sport, dport uint16, seq, ack uint32, flags uint8, data []byte) {
	s.sendSegment(netip.AddrFrom4(src), netip.AddrFrom4(dst), sport, dport, seq, ack, flags, data)
}

// sendSegment builds and sends one TCP segment with a 20-byte header from
// src to dst, both IPv4 or both IPv6. Any goroutine may call it.
func (s *Stage) sendSegment(src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8, data []byte) {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	tl := packet.TCPMinHeaderLen + len(data)
	var f []byte
	var t packet.TCP
	if src.Is4() {
		f = (*bp)[:packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+tl]
		ip := packet.IPv4(f[packet.EthernetHeaderLen:])
		ip.Encode(&packet.IPv4Fields{TotalLen: uint16(len(ip)), ID: s.nextID(), TTL: TTL, Protocol: packet.ProtoTCP, Src: src.As4(), Dst: dst.As4()})
		t = packet.TCP(ip[packet.IPv4MinHeaderLen:])
	} else {
		f = (*bp)[:packet.EthernetHeaderLen+packet.IPv6HeaderLen+tl]
		ip := packet.IPv6(f[packet.EthernetHeaderLen:])
		ip.Encode(&packet.IPv6Fields{PayloadLen: uint16(tl), NextHeader: packet.ProtoTCP, HopLimit: TTL, Src: src.As16(), Dst: dst.As16()})
		t = packet.TCP(ip[packet.IPv6HeaderLen:])
	}
	fields := packet.TCPFields{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, DataOffset: packet.TCPMinHeaderLen, Flags: flags}
	if flags&packet.TCPRst == 0 {
		fields.Window = window
	}
	t.Encode(&fields)
	copy(t[packet.TCPMinHeaderLen:], data)
	if src.Is4() {
		t.ComputeChecksum(src.As4(), dst.As4())
	} else {
		t.ComputeChecksum6(src.As16(), dst.As16())
	}
	s.out.Originate(f)
}

func (s *Stage) nextID() uint16 { return uint16(s.ipID.Add(1)) }
