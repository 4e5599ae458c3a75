// Package defrag reassembles IPv4 and IPv6 fragments before connection
// tracking, as Linux's nf_defrag_ipv4 and nf_defrag_ipv6 do, so that
// conntrack and NAT see, track and translate a fragmented datagram as a
// whole (the router fragments it again: IPv4 to the egress MTU, IPv6 to
// the largest fragment that came, which Add6 reports).
//
// Fragments of one datagram (source, destination, identification, and
// for IPv4 protocol) wait in a queue until they cover it from its first byte to
// the end the last fragment gives. Memory is bounded like
// ipfrag_high_thresh: a fragment that would take the bytes held past the
// bound is refused. A datagram not complete 30 s (ipfrag_time) after its
// first fragment came is dropped. A fragment overlapping another of its
// datagram drops the datagram (as Linux does since 4.19, RFC 5722's rule
// applied to IPv4); an exact duplicate is dropped alone; a datagram
// reaching beyond 65535 bytes, or fragments disagreeing on its end, drop
// it too. Every fragment dropped is counted on the port it came from, with
// its own reason.
//
// Reassembly is the slow path: it takes a lock and copies, and hands the
// whole datagram over in a pooled buffer. Packets that are not fragments
// never come here.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package defrag

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// Linux's defaults.
const (
	DefaultHighThresh = 4 << 20          // ipfrag_high_thresh: 4 MiB
	DefaultTimeout    = 30 * time.Second // ipfrag_time
)

// fragOverhead is what a held fragment costs beyond its payload (its
// bookkeeping, as Linux counts an skb's truesize rather than its data).
const fragOverhead = 128

// maxDatagram is the largest IPv4 datagram and the largest IPv6 payload;
// the pooled buffers a whole datagram is handed over in hold that, an
// IPv6 header and an Ethernet header.
const maxDatagram = 65535

// Config sets a reassembler's bound and timeout; zero fields take
// Linux's defaults.
type Config struct {
	HighThresh int           // bytes of fragments held at most (payload and overhead)
	Timeout    time.Duration // how long a datagram may take to arrive whole
}

// Reassembler holds the fragments of incomplete datagrams. Any goroutine
// may call it.
type Reassembler struct {
	cfg   Config
	clock clock.Clock

	mu     sync.Mutex
	queues map[key]*queue
	mem    int // bytes held, under mu

	bufs sync.Pool // *[]byte of packet.EthernetHeaderLen + packet.IPv6HeaderLen + maxDatagram

	// Reassembled counts datagrams made whole; Expired those dropped
	// incomplete at their timeout.
	Reassembled, Expired atomic.Uint64
}

// key identifies a datagram: for IPv4 by its addresses (in the first 4
// bytes of src and dst), identification and protocol; for IPv6 by its
// addresses and identification (RFC 8200 4.5).
type key struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

type frag struct {
	off, end int // payload bytes [off, end) of the datagram
	data     []byte
}

// queue is one incomplete datagram.
type queue struct {
	frags   []frag // sorted by off, never overlapping
	head    []byte // Ethernet and IP header (options included) of the first fragment, once it came
	end     int    // the datagram's payload length, once the last fragment came; else -1
	got     int    // payload bytes held
	mem     int    // what the queue counts against the bound
	expires int64
	st      *stats.Port // the port its first fragment came from, for timeouts
	maxLen  int         // the largest fragment's IP length
	maxDF   int         // the largest fragment's IP length among those with DF set
	named   int         // IPv6: where in the first fragment's IP header the fragment header is named
	next    uint8       // IPv6: what the fragment header names
}

// New returns an empty reassembler.
func New(cfg Config, clk clock.Clock) *Reassembler {
	if cfg.HighThresh == 0 {
		cfg.HighThresh = DefaultHighThresh
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	r := &Reassembler{cfg: cfg, clock: clk, queues: map[key]*queue{}}
	r.bufs.New = func() any { b := make([]byte, packet.EthernetHeaderLen+packet.IPv6HeaderLen+maxDatagram); return &b }
	return r
}

// Add takes a fragment: frame is an Ethernet frame whose IPv4 header is
// valid and whose length is the header's total length. When the fragment
// completes its datagram, Add returns the whole datagram as an Ethernet
// frame (the first fragment's Ethernet header, its IP header with the
// fragment fields cleared, the payload) in a pooled buffer the caller
// hands back with Release; otherwise it returns nil and keeps a copy of
// what it needs. A fragment refused is counted on st.
func (r *Reassembler) Add(frame []byte, st *stats.Port) *[]byte {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	hl := ip.HeaderLen()
	in := input{
		k:       key{id: uint32(ip.ID()), proto: ip.Protocol()},
		head:    frame[:packet.EthernetHeaderLen+hl],
		payload: ip[hl:ip.TotalLen()],
		off:     int(ip.FragmentOffset()) * 8,
		more:    ip.FlagsOffset()&packet.IPv4MoreFragments != 0,
		size:    int(ip.TotalLen()),
		df:      ip.DontFragment(),
		over:    hl,
	}
	*(*[4]byte)(in.k.src[:]) = ip.Src()
	*(*[4]byte)(in.k.dst[:]) = ip.Dst()
	d, _ := r.add(&in, st)
	return d
}

// Add6 takes an IPv6 fragment, as Linux's nf_defrag_ipv6 does: frame is
// an Ethernet frame whose IPv6 packet is LenValid, as long as its payload
// length says, and has a fragment header that is not an atomic fragment's
// (offset 0 and no more fragments: that packet is whole and passes as
// it is). The datagram Add6 hands back, as Add does, is the first
// fragment's Ethernet header and unfragmentable part (the headers before
// its fragment header) followed by the fragmentable part whole, the
// fragment header gone. fragMax is the largest fragment's IPv6 length:
// the datagram leaves fragmented again to that size (Linux's
// frag_max_size). RFC 5722: a fragment overlapping another drops the
// datagram. A fragment but the last whose data is not a multiple of 8
// bytes is dropped (RFC 8200 4.5), counted as a bad header; a first
// fragment without the whole header chain (RFC 7112: every extension
// header and the upper-layer header's start) as truncated.
func (r *Reassembler) Add6(frame []byte, st *stats.Port) (d *[]byte, fragMax int) {
	ip := packet.IPv6(frame[packet.EthernetHeaderLen:])
	at, named, ok := ip.FragmentAt()
	if !ok {
		st.Drop(stats.BadIPHeader)
		return nil, 0
	}
	fh := packet.IPv6Fragment(ip[at:])
	in := input{
		k:       key{src: ip.Src(), dst: ip.Dst(), id: fh.ID(), v6: true},
		head:    frame[:packet.EthernetHeaderLen+at],
		payload: ip[at+packet.IPv6FragmentLen : packet.IPv6HeaderLen+int(ip.PayloadLen())],
		off:     fh.Offset(),
		more:    fh.More(),
		size:    len(ip),
		over:    at - packet.IPv6HeaderLen,
		named:   named,
		next:    fh.NextHeader(),
	}
	if in.more && len(in.payload)&7 != 0 {
		st.Drop(stats.BadIPHeader)
		return nil, 0
	}
	if in.off == 0 && !packet.ChainFits6(in.payload, in.next) {
		st.Drop(stats.Truncated) // RFC 7112: the first fragment holds the whole header chain
		return nil, 0
	}
	return r.add(&in, st)
}

// input is one fragment, as Add and Add6 read it.
type input struct {
	k       key
	head    []byte // its Ethernet header and what of its IP header precedes the fragmentable part
	payload []byte // its fragmentable part's bytes
	off     int    // where they go in the datagram
	more    bool
	size    int  // its IP length
	df      bool // IPv4's DF
	over    int  // header bytes the datagram's 65535-byte bound counts besides the payload
	named   int  // IPv6: the offset in the IP header of the byte naming the fragment header
	next    uint8
}

// add is Add and Add6 once the fragment is read.
func (r *Reassembler) add(in *input, st *stats.Port) (*[]byte, int) {
	off, more := in.off, in.more
	end := off + len(in.payload)
	if more && !in.k.v6 {
		end &^= 7 // an IPv4 fragment that is not the last carries multiples of 8 (Linux trims the rest)
	}
	if end <= off {
		st.Drop(stats.Truncated)
		return nil, 0
	}
	k := in.k
	cost := end - off + fragOverhead

	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	q := r.queues[k]
	if q != nil && q.expires <= now {
		r.expire(k, q)
		q = nil
	}
	if in.over+end > maxDatagram {
		st.Drop(stats.FragOversize)
		if q != nil {
			r.discard(k, q, stats.FragOversize)
		}
		return nil, 0
	}
	if r.mem+cost > r.cfg.HighThresh {
		st.Drop(stats.FragMemory)
		return nil, 0
	}
	if q == nil {
		q = &queue{end: -1, expires: now + int64(r.cfg.Timeout), st: st}
		r.queues[k] = q
	}
	// The last fragment fixes the end; no fragment may reach beyond it,
	// nor may two last fragments disagree (Linux's ip_frag_queue).
	switch {
	case !more && (q.end >= 0 && end != q.end || q.end < 0 && len(q.frags) > 0 && q.frags[len(q.frags)-1].end > end),
		more && q.end >= 0 && end > q.end:
		st.Drop(stats.FragOversize)
		r.discard(k, q, stats.FragOversize)
		return nil, 0
	}
	i := 0
	for i < len(q.frags) && q.frags[i].off < off {
		i++
	}
	if i < len(q.frags) && q.frags[i].off == off && q.frags[i].end == end {
		st.Drop(stats.FragDup) // a duplicate: dropped alone, the datagram goes on
		return nil, 0
	}
	if i > 0 && q.frags[i-1].end > off || i < len(q.frags) && q.frags[i].off < end {
		st.Drop(stats.FragOverlap)
		r.discard(k, q, stats.FragOverlap)
		return nil, 0
	}
	f := frag{off: off, end: end, data: append([]byte(nil), in.payload[:end-off]...)}
	q.frags = append(q.frags, frag{})
	copy(q.frags[i+1:], q.frags[i:])
	q.frags[i] = f
	q.got += end - off
	q.mem += cost
	r.mem += cost
	if !more {
		q.end = end
	}
	if off == 0 {
		q.head = append([]byte(nil), in.head...)
		q.named, q.next = in.named, in.next
	}
	q.maxLen = max(q.maxLen, in.size)
	if in.df {
		q.maxDF = max(q.maxDF, in.size)
	}
	if q.head == nil || q.end < 0 || q.got != q.end {
		return nil, 0
	}
	return r.assemble(k, q), q.maxLen
}

// assemble builds the whole datagram of a complete queue and forgets the
// queue. r.mu is held.
func (r *Reassembler) assemble(k key, q *queue) *[]byte {
	r.forget(k, q)
	bp := r.bufs.Get().(*[]byte)
	n := len(q.head) + q.end
	b := (*bp)[:n]
	copy(b, q.head)
	data := b[len(q.head):]
	for _, f := range q.frags {
		copy(data[f.off:], f.data)
	}
	*bp = b
	r.Reassembled.Add(1)
	if k.v6 {
		ip := packet.IPv6(b[packet.EthernetHeaderLen:])
		ip[q.named] = q.next // what the fragment header named
		ip.SetPayloadLen(uint16(len(ip) - packet.IPv6HeaderLen))
		return bp
	}
	ip := packet.IPv4(b[packet.EthernetHeaderLen:])
	ip.SetTotalLen(uint16(len(ip)))
	// DF when the largest fragment had it, as Linux's ip_frag_reasm:
	// such a datagram asks for frag-needed rather than fragmentation.
	var flags uint16
	if q.maxDF > 0 && q.maxDF == q.maxLen {
		flags = packet.IPv4DontFragment
	}
	ip.SetFlagsOffset(flags)
	ip.SetHeaderChecksum()
	return bp
}

// Release hands back a datagram Add returned.
func (r *Reassembler) Release(b *[]byte) {
	*b = (*b)[:cap(*b)]
	r.bufs.Put(b)
}

// discard drops a queue, counting each fragment it held for reason. r.mu
// is held.
func (r *Reassembler) discard(k key, q *queue, reason stats.Reason) {
	for range q.frags {
		q.st.Drop(reason)
	}
	r.forget(k, q)
}

// expire drops a queue whose time ran out. r.mu is held.
func (r *Reassembler) expire(k key, q *queue) {
	r.discard(k, q, stats.FragTimeout)
	r.Expired.Add(1)
}

func (r *Reassembler) forget(k key, q *queue) {
	delete(r.queues, k)
	r.mem -= q.mem
}

// Tick drops the datagrams whose time ran out. The datapath calls it
// every second or so.
func (r *Reassembler) Tick() {
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, q := range r.queues {
		if q.expires <= now {
			r.expire(k, q)
		}
	}
}

// Mem is the number of bytes the held fragments count against the bound.
func (r *Reassembler) Mem() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mem
}

// Pending is the number of incomplete datagrams held.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queues)
}
