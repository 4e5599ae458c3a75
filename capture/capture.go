// Package capture owns the fan-out of switched frames to pcap subscribers:
// `uswitch capture` and GET /v1/capture.
//
// The datapath hands every frame a switch port receives or sends (the
// uplink's TAP is a port of a switch too) to a Hub, after checking
// Hub.Active (one atomic load), so capture costs nothing measurable while
// nobody captures. Each Subscription
// has a bounded queue of copied frames; a reader that falls behind, or never
// reads, never slows the datapath: frames that do not fit are dropped and
// counted (Subscription.Dropped). WritePcap drains the queue into a
// nanosecond-resolution pcap stream that tcpdump, tshark and Wireshark read.
//
// A frame is recorded once per switch event: when a port receives it (from
// its endpoint, or from the router on a gateway port, dropped frames
// included) and when a port sends it. A capture of one port thus sees both
// directions of that port, like tcpdump -i on it; a capture of a whole
// network sees a forwarded frame twice, received on one port and sent on
// another.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
)

// Limits of a subscription and of a hub. A subscription holds at most
// QueueFrames frames and QueueBytes bytes of frame data; a hub serves at
// most MaxSubscriptions captures at once. Memory is thus bounded whatever
// the readers do.
const (
	QueueFrames      = 1024
	QueueBytes       = 16 << 20
	MaxSubscriptions = 64
	// Snaplen is the pcap snapshot length: longer frames (GSO super-frames
	// of offloading TAPs) are cut to it, their original length recorded.
	Snaplen = 65536
)

// Filter selects the frames of a subscription. Empty fields match
// everything.
type Filter struct {
	// Port is a port name ("web", "api/eth1", "gw/front", "uplink"): its
	// frames in both directions, like tcpdump -i.
	Port string
	// Network is a network name: the frames of all its ports. The uplink
	// is on no network.
	Network string
	// Count ends the capture after Count frames (0: no limit).
	Count int
}

// Match reports whether a frame of port on network passes the filter.
func (f Filter) Match(network, port string) bool {
	return (f.Port == "" || f.Port == port) && (f.Network == "" || f.Network == network)
}

// Hub fans the datapath's frames out to the subscriptions. The zero value
// is ready to use; all methods are safe for concurrent use.
type Hub struct {
	active atomic.Bool
	subs   atomic.Pointer[[]*Subscription] // copy on write, under mu
	mu     sync.Mutex
}

// NewHub returns a hub with no subscriptions.
func NewHub() *Hub { return &Hub{} }

// Active reports whether anything captures. The datapath checks it before
// each call of Frame.
func (h *Hub) Active() bool { return h.active.Load() }

// Frame offers one frame seen on port of network (network "" for the
// uplink) to every matching subscription. It copies what it keeps, never
// blocks, and never keeps frame. A frame with offloads is captured as what
// a wire would carry: its segments, with complete checksums.
func (h *Hub) Frame(network, port string, frame []byte, off packet.Offload) {
	p := h.subs.Load()
	if p == nil {
		return
	}
	if !off.Plain() {
		err := gso.Wire(frame, off, func(f []byte) error {
			h.Frame(network, port, f, packet.Offload{})
			return nil
		})
		if err == nil {
			return
		}
		// Offloads that do not fit the frame (nothing was emitted): the
		// frame is recorded as it came, for whoever debugs that.
	}
	var mono int64 = -1 // read once, for the first subscription that queues
	for _, s := range *p {
		if s.filter.Match(network, port) {
			s.offer(&mono, frame)
		}
	}
}

// epoch is the origin of monotonic.
var epoch = time.Now()

// monotonic reads the monotonic clock, in nanoseconds since epoch: half the
// cost of time.Now, which also reads the wall clock. A subscription turns
// it into wall-clock time from the wall and monotonic clocks read together
// when it started, so its timestamps never go backwards.
func monotonic() int64 { return int64(time.Since(epoch)) }

// Subscribe starts a capture of the frames f selects. The caller must Close
// the subscription.
func (h *Hub) Subscribe(f Filter) (*Subscription, error) {
	if f.Count < 0 {
		return nil, fmt.Errorf("capture: negative count %d", f.Count)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.load()
	if len(old) >= MaxSubscriptions {
		return nil, fmt.Errorf("capture: too many captures at once (%d)", MaxSubscriptions)
	}
	now := time.Now()
	s := &Subscription{
		hub:    h,
		filter: f,
		queue:  make(chan *record, QueueFrames),
		done:   make(chan struct{}),
		wake:   make(chan struct{}, 1),
		wall0:  now.UnixNano(),
		mono0:  int64(now.Sub(epoch)),
	}
	subs := append(append(make([]*Subscription, 0, len(old)+1), old...), s)
	h.subs.Store(&subs)
	h.active.Store(true)
	return s, nil
}

// Subscriptions returns how many captures run.
func (h *Hub) Subscriptions() int { return len(h.load()) }

func (h *Hub) load() []*Subscription {
	if p := h.subs.Load(); p != nil {
		return *p
	}
	return nil
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.load()
	subs := make([]*Subscription, 0, len(old))
	for _, q := range old {
		if q != s {
			subs = append(subs, q)
		}
	}
	h.subs.Store(&subs)
	h.active.Store(len(subs) > 0)
}

// record is one captured frame: a copy of at most Snaplen bytes, the
// frame's original length and when it was seen.
type record struct {
	ts     int64 // Unix nanoseconds
	length int
	data   []byte
}

var records = sync.Pool{New: func() any { return &record{data: make([]byte, 0, 2048)} }}

func getRecord(n int) *record {
	r := records.Get().(*record)
	if cap(r.data) < n {
		r.data = make([]byte, n)
	}
	r.data = r.data[:n]
	return r
}

func putRecord(r *record) { records.Put(r) }

// Subscription is one capture: a bounded queue of frames that WritePcap
// drains.
type Subscription struct {
	hub    *Hub
	filter Filter
	queue  chan *record
	done   chan struct{}
	once   sync.Once
	wall0  int64 // Unix nanoseconds when the capture started
	mono0  int64 // monotonic() then

	// waiting is set by WritePcap when it found the queue empty and waits
	// on wake; the first frame queued then wakes it.
	waiting atomic.Bool
	wake    chan struct{}

	queued   atomic.Int64  // bytes of frame data in queue
	accepted atomic.Uint64 // frames queued so far
	dropped  atomic.Uint64
	written  atomic.Uint64
}

// Filter returns the subscription's filter.
func (s *Subscription) Filter() Filter { return s.filter }

// Pending returns how many frames wait in the queue to be written.
func (s *Subscription) Pending() int { return len(s.queue) }

// Dropped returns how many matching frames were dropped because the queue
// was full (the reader did not keep up).
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Captured returns how many frames WritePcap has written.
func (s *Subscription) Captured() uint64 { return s.written.Load() }

// offer queues a copy of frame, or drops and counts it when the queue is
// full. It never blocks. *mono is monotonic(), or -1 if not read yet.
func (s *Subscription) offer(mono *int64, frame []byte) {
	if c := s.filter.Count; c > 0 && s.accepted.Load() >= uint64(c) {
		return // enough for the capture: neither queued nor a drop
	}
	n := min(len(frame), Snaplen)
	if len(s.queue) == cap(s.queue) { // full: drop without copying
		s.dropped.Add(1)
		return
	}
	if s.queued.Add(int64(n)) > QueueBytes {
		s.queued.Add(-int64(n))
		s.dropped.Add(1)
		return
	}
	if *mono < 0 {
		*mono = monotonic()
	}
	r := getRecord(n)
	copy(r.data, frame)
	r.ts, r.length = s.wall0+*mono-s.mono0, len(frame)
	select {
	case s.queue <- r:
		s.accepted.Add(1)
		if s.waiting.Load() && s.waiting.CompareAndSwap(true, false) {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	default: // filled up meanwhile by another port's goroutine
		s.queued.Add(-int64(n))
		putRecord(r)
		s.dropped.Add(1)
	}
}

// Close ends the subscription: the hub stops offering it frames, a running
// WritePcap returns, and queued frames are released. Calling it again is
// harmless.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.hub.remove(s)
		close(s.done)
		for {
			select {
			case r := <-s.queue:
				s.queued.Add(-int64(len(r.data)))
				putRecord(r)
			default:
				return
			}
		}
	})
}

// ErrClosed is returned by WritePcap on a subscription closed before it
// started.
var ErrClosed = errors.New("capture: subscription closed")

// WritePcap writes a pcap stream to w: the file header (nanosecond
// timestamps, LinkTypeEthernet, snaplen Snaplen), then the queued frames
// as they come, in batches (see batchDelay). If w has a Flush method
// (bufio.Writer, an HTTP response wrapper) it is called whenever the queue
// is empty, so a reader at the other end sees each frame within a
// millisecond. Timestamps are wall-clock times that never go backwards in
// the stream (frames of ports read by different goroutines may be queued a
// little out of their timestamps' order; such a frame gets its
// predecessor's timestamp).
//
// It returns nil when ctx is done, Filter().Count frames were written or
// the subscription was closed, and the error of a failed write otherwise
// (the reader went away). One WritePcap at a time per subscription.
func (s *Subscription) WritePcap(ctx context.Context, w io.Writer) error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	out, err := s.newStream(w)
	if err != nil {
		return err
	}
	if err := flush(w); err != nil {
		return err
	}
	limit := uint64(s.filter.Count)
	for limit == 0 || s.written.Load() < limit {
		select {
		case r := <-s.queue:
			if err := out.write(r); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		default:
		}
		// The queue is empty: flush, and wait for the next frame.
		if err := flush(w); err != nil {
			return err
		}
		s.waiting.Store(true)
		if len(s.queue) > 0 { // queued before waiting was seen
			s.waiting.Store(false)
			continue
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		}
		// Let a burst gather, so that the datapath pays for one wakeup
		// per batch of frames rather than per frame.
		time.Sleep(batchDelay)
	}
	return flush(w)
}

// batchDelay is how long WritePcap, woken by a frame, waits for more
// before it writes them: the latency a capture adds, and a bound of
// 1/batchDelay on the wakeups it costs the datapath per second. The queue
// holds QueueFrames frames for that long: above QueueFrames/batchDelay
// frames a second (4 million) frames are dropped.
const batchDelay = 250 * time.Microsecond

// stream is the pcap stream of one WritePcap.
type stream struct {
	s    *Subscription
	pw   *pcapgo.Writer
	last int64 // timestamp of the last frame written
}

// newStream writes the pcap file header to w.
func (s *Subscription) newStream(w io.Writer) (*stream, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(Snaplen, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("capture: writing the pcap header: %w", err)
	}
	return &stream{s: s, pw: pw}, nil
}

// write writes one dequeued frame and releases it.
func (st *stream) write(r *record) error {
	st.last = max(r.ts, st.last)
	err := st.pw.WritePacket(gopacket.CaptureInfo{
		Timestamp:     time.Unix(0, st.last),
		CaptureLength: len(r.data),
		Length:        r.length,
	}, r.data)
	st.s.queued.Add(-int64(len(r.data)))
	putRecord(r)
	if err != nil {
		return fmt.Errorf("capture: writing a frame: %w", err)
	}
	st.s.written.Add(1)
	return nil
}

// flush flushes w if it can be flushed.
func flush(w io.Writer) error {
	switch f := w.(type) {
	case interface{ Flush() error }:
		if err := f.Flush(); err != nil {
			return fmt.Errorf("capture: flushing: %w", err)
		}
	case interface{ Flush() }:
		f.Flush()
	}
	return nil
}
