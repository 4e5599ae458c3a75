// Package defrag reassembles IPv4 fragments before connection tracking, as
// Linux's nf_defrag_ipv4 does, so that conntrack and NAT see, track and
// translate a fragmented datagram as a whole (the router fragments it
// again to the egress MTU).
//
// Fragments of one datagram (source, destination, identification and
// protocol) wait in a queue until they cover it from its first byte to
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

// maxDatagram is the largest IPv4 datagram, the size of the pooled
// buffers a whole datagram is handed over in (with its Ethernet header).
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

	bufs sync.Pool // *[]byte of packet.EthernetHeaderLen + maxDatagram

	// Reassembled counts datagrams made whole; Expired those dropped
	// incomplete at their timeout.
	Reassembled, Expired atomic.Uint64
}

type key struct {
	src, dst [4]byte
	id       uint16
	proto    uint8
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
	r.bufs.New = func() any { b := make([]byte, packet.EthernetHeaderLen+maxDatagram); return &b }
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
	payload := ip[hl:ip.TotalLen()]
	off := int(ip.FragmentOffset()) * 8
	more := ip.FlagsOffset()&packet.IPv4MoreFragments != 0
	end := off + len(payload)
	if more {
		end &^= 7 // a fragment that is not the last carries multiples of 8 (Linux trims the rest)
	}
	if end <= off {
		st.Drop(stats.Truncated)
		return nil
	}
	k := key{src: ip.Src(), dst: ip.Dst(), id: ip.ID(), proto: ip.Protocol()}
	cost := end - off + fragOverhead

	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	q := r.queues[k]
	if q != nil && q.expires <= now {
		r.expire(k, q)
		q = nil
	}
	if hl+end > maxDatagram {
		st.Drop(stats.FragOversize)
		if q != nil {
			r.discard(k, q, stats.FragOversize)
		}
		return nil
	}
	if r.mem+cost > r.cfg.HighThresh {
		st.Drop(stats.FragMemory)
		return nil
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
		return nil
	}
	i := 0
	for i < len(q.frags) && q.frags[i].off < off {
		i++
	}
	if i < len(q.frags) && q.frags[i].off == off && q.frags[i].end == end {
		st.Drop(stats.FragDup) // a duplicate: dropped alone, the datagram goes on
		return nil
	}
	if i > 0 && q.frags[i-1].end > off || i < len(q.frags) && q.frags[i].off < end {
		st.Drop(stats.FragOverlap)
		r.discard(k, q, stats.FragOverlap)
		return nil
	}
	f := frag{off: off, end: end, data: append([]byte(nil), payload[:end-off]...)}
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
		q.head = append([]byte(nil), frame[:packet.EthernetHeaderLen+hl]...)
	}
	q.maxLen = max(q.maxLen, len(ip[:ip.TotalLen()]))
	if ip.DontFragment() {
		q.maxDF = max(q.maxDF, len(ip[:ip.TotalLen()]))
	}
	if q.head == nil || q.end < 0 || q.got != q.end {
		return nil
	}
	return r.assemble(k, q)
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
	*bp = b
	r.Reassembled.Add(1)
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
