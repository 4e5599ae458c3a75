package router

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

const (
	// maxGenerated is the size of the router's pooled buffers: a full
	// 64 KiB packet for fragmentation, with room for the Ethernet header.
	maxGenerated = 65536 + packet.EthernetHeaderLen
	// icmpQuoteMax bounds an ICMP error to 576 bytes, as RFC 1812 and Linux do.
	icmpQuoteMax = 576 - packet.IPv4MinHeaderLen - packet.ICMPHeaderLen
	generatedTTL = 64
	dnsPort      = 53
)

// localWire handles a frame addressed to one of the router's own
// addresses: as is when it is plain, else as the wire frames it stands for.
func (r *Router) localWire(p *Port, frame []byte, off packet.Offload) {
	if off.Plain() {
		r.local(p, frame)
		return
	}
	r.segment(frame, off, func(f []byte) bool { r.local(p, f); return true })
}

// segment calls each with the wire frames of a frame with offloads until
// it returns false. A frame that cannot be segmented is dropped.
func (r *Router) segment(frame []byte, off packet.Offload, each func([]byte) bool) {
	_ = gso.Wire(frame, off, func(f []byte) error {
		if !each(f) {
			return errEnough
		}
		return nil
	})
}

// errEnough stops a segmentation early.
var errEnough = errors.New("enough segments")

// local handles a plain packet addressed to one of the router's own
// addresses.
func (r *Router) local(p *Port, frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	if ip.IsFragment() {
		p.stats.Drop(stats.NotForwarded) // the router reassembles nothing
		return
	}
	switch ip.Protocol() {
	case packet.ProtoICMP:
		m := packet.ICMP(ip.Payload())
		if !m.Valid() || packet.Checksum(m, 0) != 0 {
			p.stats.Drop(stats.BadChecksum)
			return
		}
		if m.Type() == packet.ICMPEchoRequest && m.Code() == 0 {
			r.echoReply(frame)
		}
	case packet.ProtoUDP:
		if r.resolve(p, frame) {
			return
		}
		r.icmpError(frame, packet.Offload{}, packet.ICMPUnreachable, packet.ICMPCodePortUnreach, 0)
	case packet.ProtoTCP:
		if !r.dnsTCP(p, frame) {
			r.reset(frame)
		}
	default:
		r.icmpError(frame, packet.Offload{}, packet.ICMPUnreachable, 2 /* protocol unreachable */, 0)
	}
}

// resolve hands a UDP datagram to port 53 of the ingress network's gateway
// to the resolver and reports whether it took it. The reply leaves from
// gateway:53, possibly later and from another goroutine.
func (r *Router) resolve(p *Port, frame []byte) bool {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	u := ip.Payload()
	if r.dns == nil || p.Network == "" || ip.Dst() != p.ip || len(u) < packet.UDPHeaderLen || packet.Ports(u).Dst() != dnsPort {
		return false
	}
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < packet.UDPHeaderLen || ulen > len(u) {
		p.stats.Drop(stats.Truncated)
		return true
	}
	gw, src, sport := p.ip, ip.Src(), packet.Ports(u).Src()
	return r.dns.Query(p.Network, src, sport, u[packet.UDPHeaderLen:ulen], func(payload []byte) {
		r.udpReply(gw, dnsPort, src, sport, payload)
	})
}

// udpReply sends payload in a UDP datagram the router originates. Any
// goroutine may call it: the frame is built in a buffer of its own.
func (r *Router) udpReply(src [4]byte, sport uint16, dst [4]byte, dport uint16, payload []byte) {
	ulen := packet.UDPHeaderLen + len(payload)
	if packet.IPv4MinHeaderLen+ulen > 0xffff {
		return
	}
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	f := (*bp)[:packet.EthernetHeaderLen+packet.IPv4MinHeaderLen+ulen]
	ip := f[packet.EthernetHeaderLen:]
	packet.PutIPv4Header(ip, uint16(len(ip)), r.nextID(), generatedTTL, packet.ProtoUDP, src, dst)
	u := ip[packet.IPv4MinHeaderLen:]
	binary.BigEndian.PutUint16(u[0:2], sport)
	binary.BigEndian.PutUint16(u[2:4], dport)
	binary.BigEndian.PutUint16(u[4:6], uint16(ulen))
	u[6], u[7] = 0, 0
	copy(u[packet.UDPHeaderLen:], payload)
	sum := packet.Checksum(u, packet.PseudoHeaderSum(src, dst, packet.ProtoUDP, uint16(ulen)))
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(u[6:8], sum)
	r.send(f)
}

// echoReply turns an echo request into its reply in place and sends it.
func (r *Router) echoReply(frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	src, dst := ip.Src(), ip.Dst()
	ip.SetSrc(dst)
	ip.SetDst(src)
	ip.SetTTL(generatedTTL)
	ip.SetHeaderChecksum()
	m := packet.ICMP(ip.Payload())
	old := binary.BigEndian.Uint16(m[0:2])
	m[0] = packet.ICMPEchoReply
	binary.BigEndian.PutUint16(m[2:4], packet.ChecksumUpdate16(m.Checksum(), old, binary.BigEndian.Uint16(m[0:2])))
	r.send(frame)
}

// send routes a packet the router itself originates.
func (r *Router) send(frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	out, nh, ok := r.lay.Load().routes.lookup(ip.Dst())
	if !ok || r.ct.Output(ip, out.iface).Action != nat.Accept {
		return
	}
	packet.Ethernet(frame).SetEtherType(packet.EtherTypeIPv4)
	out.sendVia(nh, frame, packet.Offload{})
}

// icmpError answers the packet in frame with an ICMP error, unless RFC 1122
// forbids it (an error about an error, a non-first fragment, a source that
// is not one host) or the rate limit says no. The error about a super-frame
// quotes its first segment, as a wire would have carried it.
func (r *Router) icmpError(frame []byte, off packet.Offload, typ, code uint8, mtu uint16) {
	if !off.Plain() {
		r.segment(frame, off, func(f []byte) bool {
			r.icmpError(f, packet.Offload{}, typ, code, mtu)
			return false
		})
		return
	}
	orig := packet.IPv4(frame[packet.EthernetHeaderLen:])
	src := orig.Src()
	if orig.FragmentOffset() != 0 || martianSrc(src) || src == [4]byte{} || r.isDirectedBroadcast(src) {
		return
	}
	if orig.Protocol() == packet.ProtoICMP {
		m := packet.ICMP(orig.Payload())
		if !m.Valid() || m.IsError() {
			return
		}
	}
	if !(typ == packet.ICMPUnreachable && code == packet.ICMPCodeFragNeeded) && !r.limit.allow(src) {
		return
	}
	out, _, ok := r.lay.Load().routes.lookup(src)
	if !ok {
		return
	}
	quote := len(orig)
	if quote > icmpQuoteMax {
		quote = icmpQuoteMax
	}
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	n := packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + packet.ICMPHeaderLen + quote
	f := (*bp)[:n]
	ip := f[packet.EthernetHeaderLen:]
	packet.PutIPv4Header(ip, uint16(len(ip)), r.nextID(), generatedTTL, packet.ProtoICMP, out.ip, src)
	m := packet.ICMP(ip[packet.IPv4MinHeaderLen:])
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint32(m[4:8], uint32(mtu))
	copy(m[packet.ICMPHeaderLen:], orig[:quote])
	m.SetChecksum()
	r.send(f)
}

// reset answers a TCP segment to a closed port with RST, as RFC 793 says.
func (r *Router) reset(frame []byte) {
	orig := packet.IPv4(frame[packet.EthernetHeaderLen:])
	t := packet.TCP(orig.Payload())
	if !t.Valid() || t.Flags()&packet.TCPRst != 0 {
		return
	}
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	n := packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + packet.TCPMinHeaderLen
	f := (*bp)[:n]
	ip := f[packet.EthernetHeaderLen:]
	packet.PutIPv4Header(ip, uint16(len(ip)), r.nextID(), generatedTTL, packet.ProtoTCP, orig.Dst(), orig.Src())
	rst := ip[packet.IPv4MinHeaderLen:]
	clear(rst)
	binary.BigEndian.PutUint16(rst[0:2], binary.BigEndian.Uint16(t[2:4]))
	binary.BigEndian.PutUint16(rst[2:4], binary.BigEndian.Uint16(t[0:2]))
	rst[12] = 5 << 4
	if t.Flags()&packet.TCPAck != 0 {
		binary.BigEndian.PutUint32(rst[4:8], t.Ack())
		rst[13] = packet.TCPRst
	} else {
		seglen := uint32(len(t) - t.HeaderLen())
		if t.Flags()&packet.TCPSyn != 0 {
			seglen++
		}
		if t.Flags()&packet.TCPFin != 0 {
			seglen++
		}
		binary.BigEndian.PutUint32(rst[8:12], t.Seq()+seglen)
		rst[13] = packet.TCPRst | packet.TCPAck
	}
	sum := packet.PseudoHeaderSum(orig.Dst(), orig.Src(), packet.ProtoTCP, packet.TCPMinHeaderLen)
	binary.BigEndian.PutUint16(rst[16:18], packet.Checksum(rst, sum))
	r.send(f)
}

// fragment sends an oversized frame out of p as fragments of at most p's
// MTU (RFC 791); options are copied into every fragment. A frame with
// offloads is segmented first, and each segment fragmented if need be.
func (r *Router) fragment(p *Port, frame []byte, off packet.Offload) {
	if !off.Plain() {
		r.segment(frame, off, func(f []byte) bool { r.fragment(p, f, packet.Offload{}); return true })
		return
	}
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	hl := ip.HeaderLen()
	data := ip[hl:ip.TotalLen()]
	chunk := (p.MTU - hl) &^ 7
	if chunk <= 0 {
		return
	}
	base := ip.FlagsOffset()
	bp := r.bufs.Get().(*[]byte)
	defer r.bufs.Put(bp)
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		n := packet.EthernetHeaderLen + hl + end - off
		f := (*bp)[:n]
		copy(f, frame[:packet.EthernetHeaderLen+hl])
		copy(f[packet.EthernetHeaderLen+hl:], data[off:end])
		fip := packet.IPv4(f[packet.EthernetHeaderLen:])
		fo := base&^packet.IPv4MoreFragments + uint16(off/8)
		if end < len(data) || base&packet.IPv4MoreFragments != 0 {
			fo |= packet.IPv4MoreFragments
		}
		fip.SetFlagsOffset(fo)
		fip.SetTotalLen(uint16(hl + end - off))
		fip.SetHeaderChecksum()
		p.link.Send(f, packet.Offload{})
	}
}

func (r *Router) nextID() uint16 { return uint16(atomic.AddUint32(&r.ipID, 1)) }

// rateLimiter bounds the ICMP errors the router sends like Linux: a global
// token bucket (icmp_msgs_per_sec 1000, icmp_msgs_burst 50) and one per
// destination (icmp_ratelimit 1 s, burst 6), the latter kept in a small
// fixed table so a flood of sources cannot grow memory.
type rateLimiter struct {
	mu     sync.Mutex
	clock  clock.Clock
	global bucket
	dests  [256]struct {
		ip [4]byte
		b  bucket
	}
}

type bucket struct {
	tokens float64
	last   int64
}

func (b *bucket) take(now int64, rate, burst float64) bool {
	if b.last == 0 {
		b.tokens = burst
	} else {
		b.tokens = min(burst, b.tokens+float64(now-b.last)/1e9*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func newRateLimiter(clk clock.Clock) *rateLimiter { return &rateLimiter{clock: clk} }

func (l *rateLimiter) allow(dst [4]byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now() + 1 // never 0, which means "unused"
	slot := &l.dests[(uint(dst[0])*31+uint(dst[1])*17+uint(dst[2])*7+uint(dst[3]))%uint(len(l.dests))]
	if slot.ip != dst {
		slot.ip, slot.b = dst, bucket{}
	}
	if !slot.b.take(now, 1, 6) {
		return false
	}
	return l.global.take(now, 1000, 50)
}
