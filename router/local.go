package router

import (
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
)

// localWire hands a frame addressed to one of the router's own addresses
// to the host stage: as is when it is plain, else as the wire frames it
// stands for. Without a host stage nothing is local.
func (r *Router) localWire(p *Port, frame []byte, off packet.Offload) {
	if r.host == nil {
		p.stats.Drop(stats.NotForwarded)
		return
	}
	if off.Plain() {
		r.host.Deliver(p.in, frame)
		return
	}
	r.segment(frame, off, func(f []byte) bool { r.host.Deliver(p.in, f); return true })
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

// Originate routes a packet the host stage sends (host.Output): IPv4 or
// IPv6, by its version.
func (r *Router) Originate(frame []byte) {
	if frame[packet.EthernetHeaderLen]>>4 == 6 {
		r.send6(frame)
		return
	}
	r.send(frame)
}

// ICMPError6 answers a plain IPv6 packet with an ICMPv6 error, within the
// rate limit (host.Output).
func (r *Router) ICMPError6(frame []byte, typ, code uint8) {
	r.icmpError6(frame, packet.Offload{}, typ, code, 0)
}

// ICMPError answers a plain packet with an ICMP error, within the rate
// limit (host.Output).
func (r *Router) ICMPError(frame []byte, typ, code uint8) {
	r.icmpError(frame, packet.Offload{}, typ, code, 0)
}

// send routes a packet the router itself originates.
func (r *Router) send(frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	out, nh, ok := r.lay.Load().routes.lookup(ip.Dst())
	if !ok || r.ct.Output(ip, out.iface).Action != nat.Accept {
		return
	}
	packet.Ethernet(frame).SetEtherType(packet.EtherTypeIPv4)
	sendVia(out, out.arp.Cache, nh, frame, packet.Offload{}, nil)
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
	ip := packet.IPv4(f[packet.EthernetHeaderLen:])
	ip.Encode(&packet.IPv4Fields{TotalLen: uint16(len(ip)), ID: r.nextID(), TTL: generatedTTL, Protocol: packet.ProtoICMP, Src: out.ip, Dst: src})
	m := packet.ICMP(ip[packet.IPv4MinHeaderLen:])
	m.Encode(&packet.ICMPFields{Type: typ, Code: code, Rest: uint32(mtu)})
	copy(m[packet.ICMPHeaderLen:], orig[:quote])
	m.SetChecksum()
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
		p.send(f, packet.Offload{})
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
		ip [16]byte // an IPv4 address as ::ffff:a.b.c.d
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
	return l.allowKey([16]byte{10: 0xff, 11: 0xff, 12: dst[0], 13: dst[1], 14: dst[2], 15: dst[3]})
}

// allowKey is allow for an IPv6 address (or an IPv4-mapped one).
func (l *rateLimiter) allowKey(dst [16]byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now() + 1 // never 0, which means "unused"
	h := uint(0)
	for _, b := range dst {
		h = h*31 + uint(b)
	}
	slot := &l.dests[h%uint(len(l.dests))]
	if slot.ip != dst {
		slot.ip, slot.b = dst, bucket{}
	}
	if !slot.b.take(now, 1, 6) {
		return false
	}
	return l.global.take(now, 1000, 50)
}
