package host

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
)

// The TCP responder: just enough TCP for request/response services over
// a lossless virtual wire. It keeps a small state per connection (the next
// sequence numbers both ways and the bytes received and not yet consumed),
// delivers in-order data to the port's StreamHandler, acknowledges it, and
// sends what the handler writes in segments of the client's MSS. It does
// not retransmit: a segment lost on the way is recovered by the client
// asking again. Out-of-order segments are dropped and acknowledged with
// what was expected, so the client sends them again.

const (
	// MaxConns bounds the responder's connections; a SYN beyond it, when
	// no idle connection can be evicted, is reset.
	MaxConns = 1024
	// IdleTimeout is how long a connection with no segment either way is
	// kept before a new one may evict it.
	IdleTimeout = 60 * time.Second
	// MaxPending bounds the bytes a connection holds that its handler has
	// not consumed (a DNS message and its length); beyond, it is reset.
	MaxPending = 2 + 65535
	// defaultMSS is the segment size when the client's SYN names none:
	// the minimum every IPv4 host takes.
	defaultMSS = 536
	maxMSS     = 1460
	window     = 65535
)

// StreamHandler serves TCP connections to one port of the router's
// addresses.
type StreamHandler interface {
	// Accept says whether a connection from src:sport arriving at in is
	// served; a refused one is reset, as a closed port is.
	Accept(in Ingress, src [4]byte, sport uint16) bool
	// Data is called with the bytes received on c that earlier calls have
	// not consumed, in order, and returns how many it consumed. It runs on
	// a datapath goroutine and must not block; it answers with c.Write,
	// then or later from any goroutine. data is not kept after it returns.
	Data(c *Conn, data []byte) int
}

// connKey names a connection from the stage's side.
type connKey struct {
	local, remote [4]byte
	lport, rport  uint16
}

// conns is the responder's connection table.
type conns struct {
	mu sync.Mutex
	m  map[connKey]*Conn
}

// Conn is one connection of the TCP responder.
type Conn struct {
	In     Ingress // where it came in
	Remote [4]byte // the client's address
	Port   uint16  // the client's port

	s   *Stage
	key connKey
	h   StreamHandler
	mss int

	rx      sync.Mutex // the receive side: pending; held while Data runs
	pending []byte

	tx       sync.Mutex // the send state, shared with writers
	sndNxt   uint32
	rcvNxt   uint32
	finSent  bool
	finRcvd  bool
	lastSeen int64 // clock time of the last segment either way
}

var isnSeed = maphash.MakeSeed()

// serveTCP handles a TCP segment to the host: the responder's when a
// handler serves its port, else a reset.
func (s *Stage) serveTCP(in Ingress, frame []byte) {
	ip := packet.IPv4(frame[packet.EthernetHeaderLen:])
	t := packet.TCP(ip.Payload())
	if !t.Valid() {
		return
	}
	k := connKey{local: ip.Dst(), remote: ip.Src(), lport: t.DstPort(), rport: t.SrcPort()}
	h := s.tcp[key{packet.ProtoTCP, k.lport}]
	if h == nil || k.local != in.Addr {
		s.Reset(frame)
		return
	}
	flags := t.Flags()
	s.conns.mu.Lock()
	c := s.conns.m[k]
	s.conns.mu.Unlock()
	switch {
	case flags&packet.TCPRst != 0:
		if c != nil {
			s.drop(c)
		}
		return
	case flags&packet.TCPSyn != 0 && flags&packet.TCPAck == 0:
		s.accept(in, h, k, t, c)
		return
	case c == nil:
		s.Reset(frame)
		return
	case flags&packet.TCPAck == 0:
		return
	}
	c.segment(t)
}

// accept answers a SYN with SYN-ACK and makes its connection. A SYN for a
// connection that exists (a retransmission) is answered again.
func (s *Stage) accept(in Ingress, h StreamHandler, k connKey, t packet.TCP, old *Conn) {
	if old != nil {
		old.tx.Lock()
		same := old.rcvNxt == t.Seq()+1
		old.tx.Unlock()
		if same {
			old.send(packet.TCPSyn|packet.TCPAck, old.sndNxt-1)
			return
		}
		s.drop(old)
	}
	if !h.Accept(in, k.remote, k.rport) {
		s.sendTCP(k.local, k.remote, k.lport, k.rport, 0, t.Seq()+1, packet.TCPRst|packet.TCPAck, nil)
		return
	}
	var hs maphash.Hash
	hs.SetSeed(isnSeed)
	hs.Write(k.remote[:])
	hs.Write(t[0:2])
	hs.Write(t[4:8])
	isn := uint32(hs.Sum64())
	c := &Conn{In: in, Remote: k.remote, Port: k.rport, s: s, key: k, h: h, mss: synMSS(t),
		sndNxt: isn + 1, rcvNxt: t.Seq() + 1, lastSeen: s.clock.Now()}
	if !s.add(c) {
		s.sendTCP(k.local, k.remote, k.lport, k.rport, 0, t.Seq()+1, packet.TCPRst|packet.TCPAck, nil)
		return
	}
	c.send(packet.TCPSyn|packet.TCPAck, isn)
}

// add puts c in the table, evicting idle connections when it is full.
func (s *Stage) add(c *Conn) bool {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	if len(s.conns.m) >= MaxConns {
		now := s.clock.Now()
		for k, o := range s.conns.m {
			o.tx.Lock()
			idle := time.Duration(now-o.lastSeen) > IdleTimeout
			o.tx.Unlock()
			if idle {
				delete(s.conns.m, k)
			}
		}
		if len(s.conns.m) >= MaxConns {
			return false
		}
	}
	s.conns.m[c.key] = c
	return true
}

// drop forgets c.
func (s *Stage) drop(c *Conn) {
	s.conns.mu.Lock()
	if s.conns.m[c.key] == c {
		delete(s.conns.m, c.key)
	}
	s.conns.mu.Unlock()
}

// Conns returns how many connections the responder holds.
func (s *Stage) Conns() int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	return len(s.conns.m)
}

// synMSS is the MSS option of a SYN, bounded to what one Ethernet frame
// carries, or the IPv4 default.
func synMSS(t packet.TCP) int {
	if m, ok := t.MSS(); ok && m > 0 {
		return min(int(m), maxMSS)
	}
	return defaultMSS
}

// segment handles an ACK-bearing segment of an established connection.
func (c *Conn) segment(t packet.TCP) {
	c.rx.Lock()
	defer c.rx.Unlock()
	flags := t.Flags()
	data := t[t.HeaderLen():]
	seq := t.Seq()
	c.tx.Lock()
	c.lastSeen = c.s.clock.Now()
	if c.finSent && c.finRcvd && t.Ack() == c.sndNxt {
		c.tx.Unlock()
		c.s.drop(c) // the last ACK of the close
		return
	}
	// Data before what is expected was seen already: keep what follows.
	if d := c.rcvNxt - seq; d != 0 && d < 1<<31 && uint32(len(data)) > d {
		data, seq = data[d:], c.rcvNxt
	}
	if seq != c.rcvNxt || (len(data) == 0 && flags&packet.TCPFin == 0) {
		// Out of order, a duplicate, or a bare ACK: a bare ACK needs no
		// answer; the others get the ACK of what is expected.
		resend := seq != c.rcvNxt
		c.tx.Unlock()
		if resend {
			c.ack()
		}
		return
	}
	if len(c.pending)+len(data) > MaxPending {
		c.tx.Unlock()
		c.abort()
		return
	}
	c.rcvNxt += uint32(len(data))
	fin := flags&packet.TCPFin != 0 && !c.finRcvd
	if fin {
		c.rcvNxt++
		c.finRcvd = true
	}
	sent := c.sndNxt
	c.tx.Unlock()
	if len(data) > 0 {
		c.pending = append(c.pending, data...)
		n := c.h.Data(c, c.pending)
		c.pending = c.pending[:copy(c.pending, c.pending[n:])]
	}
	if fin {
		c.close() // the client is done: so are we
		return
	}
	c.tx.Lock()
	wrote := c.sndNxt != sent
	c.tx.Unlock()
	if !wrote {
		c.ack()
	}
}

// Write sends b to the client in segments of at most its MSS. Any
// goroutine may call it; nothing is sent after the connection closed.
func (c *Conn) Write(b []byte) {
	c.tx.Lock()
	defer c.tx.Unlock()
	if c.finSent {
		return
	}
	for len(b) > 0 {
		n := min(len(b), c.mss)
		flags := uint8(packet.TCPAck)
		if n == len(b) {
			flags |= packet.TCPPsh
		}
		c.s.sendTCP(c.key.local, c.key.remote, c.key.lport, c.key.rport, c.sndNxt, c.rcvNxt, flags, b[:n])
		c.sndNxt += uint32(n)
		b = b[n:]
	}
	c.lastSeen = c.s.clock.Now()
}

// ack acknowledges what was received.
func (c *Conn) ack() {
	c.tx.Lock()
	defer c.tx.Unlock()
	c.s.sendTCP(c.key.local, c.key.remote, c.key.lport, c.key.rport, c.sndNxt, c.rcvNxt, packet.TCPAck, nil)
}

// close sends our FIN (with the ACK of the client's).
func (c *Conn) close() {
	c.tx.Lock()
	defer c.tx.Unlock()
	if c.finSent {
		return
	}
	c.s.sendTCP(c.key.local, c.key.remote, c.key.lport, c.key.rport, c.sndNxt, c.rcvNxt, packet.TCPFin|packet.TCPAck, nil)
	c.sndNxt++
	c.finSent = true
}

// abort resets the connection and forgets it.
func (c *Conn) abort() {
	c.tx.Lock()
	c.finSent = true
	c.s.sendTCP(c.key.local, c.key.remote, c.key.lport, c.key.rport, c.sndNxt, c.rcvNxt, packet.TCPRst|packet.TCPAck, nil)
	c.tx.Unlock()
	c.s.drop(c)
}

// send sends a segment without data with sequence number seq, leaving the
// send state as it is (the SYN-ACK).
func (c *Conn) send(flags uint8, seq uint32) {
	c.tx.Lock()
	defer c.tx.Unlock()
	c.s.sendTCP(c.key.local, c.key.remote, c.key.lport, c.key.rport, seq, c.rcvNxt, flags, nil)
}
