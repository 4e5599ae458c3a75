// Package dns owns the embedded resolver, Docker's 127.0.0.11 in the role
// of each network's gateway: on a network with dns = true it answers, at
// gateway:53, the names and aliases of the endpoints on that network (A
// and, on a network with subnet6, AAAA with their addresses on that
// network, also as "<name>.<network>"; other types with no data; PTR in
// in-addr.arpa and ip6.arpa for those addresses), says NXDOMAIN for
// unknown single-label names, names under "<network>" and the names of
// endpoints on other networks, answers host.uswitch.internal with the
// asking network's gateway (the host, as host.docker.internal), and
// forwards every other name, unknown single labels included as Docker does,
// to the [dns] upstream servers (over TCP what came over TCP, and again
// over TCP what upstream truncates); without upstream servers, unknown
// single labels are NXDOMAIN and other names REFUSED. An endpoint on several
// networks with DNS sees the names of all of them, whichever gateway it
// asks, its asking network's addresses first.
//
// Local answers are built synchronously with no I/O, so the datapath
// goroutine that hands a query over never blocks; forwarded queries run on
// goroutines of their own, a bounded number asking at once and a bounded
// queue waiting, that dial the upstream servers through a Dialer (from the
// uplink's namespace in production) and reply later.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package dns

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/uswitch-dev/uswitch/config"
)

// TTL is the time to live of local answers, in seconds (Docker's).
const TTL = 600

// HostName is the name of the host, as host.docker.internal with
// host-gateway: the asking network's gateway, whose ports are the host's.
const HostName = "host.uswitch.internal"

// Defaults for forwarding.
const (
	DefaultMaxInFlight = 256             // forwarded queries asking upstream at once
	DefaultMaxQueued   = 4096            // more waiting for their turn; beyond, SERVFAIL
	DefaultTimeout     = 2 * time.Second // per upstream server
)

// Dialer opens the connections to upstream servers. *net.Dialer is one;
// NetnsDialer dials from another network namespace.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Stats are the resolver's counters.
type Stats struct {
	Queries     uint64 `json:"queries"`      // well-formed queries received
	Answered    uint64 `json:"answered"`     // answered locally with at least one record
	NXDomain    uint64 `json:"nxdomain"`     // answered locally with NXDOMAIN
	Refused     uint64 `json:"refused"`      // not ours and no upstream (or not a standard query)
	Forwarded   uint64 `json:"forwarded"`    // handed to a worker for the upstream servers
	Overflow    uint64 `json:"overflow"`     // not forwarded: every worker busy and the queue full (answered SERVFAIL)
	Truncated   uint64 `json:"truncated"`    // upstream answers over UDP truncated, asked again over TCP
	UpstreamErr uint64 `json:"upstream_err"` // no upstream server answered (answered SERVFAIL)
	Malformed   uint64 `json:"malformed"`    // dropped: not a DNS query that parses
}

type counters struct {
	queries, answered, nxdomain, refused, forwarded, overflow, truncated, upstreamErr, malformed atomic.Uint64
}

// Server is the embedded resolver of one instance.
type Server struct {
	names    atomic.Pointer[names] // replaced whole by SetPlan
	upstream []string
	dialer   Dialer
	log      *slog.Logger
	timeout  time.Duration
	slots    chan struct{} // one token per forwarded query asking upstream
	pending  atomic.Int64  // forwarded queries asking or waiting for a slot
	maxPend  int64         // the bound of pending
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	c        counters
}

// names is what the resolver answers from, built from one plan.
type names struct {
	zones map[string]*zone // by network name, networks with dns = true only
	// views maps an endpoint's address on a network to the zones it sees:
	// that network's first, then its other networks with DNS, so that an
	// endpoint on several networks resolves the names of all of them (as
	// Docker's per-container resolver does) whichever gateway it asks.
	views map[view][]*zone
	known map[string]bool // every endpoint name and alias of the plan
}

// New builds the resolver for plan's networks that have dns = true.
// upstream dials plan.DNS.Upstream; it may be nil when there is none.
func New(plan *config.Plan, upstream Dialer, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		upstream: append([]string(nil), plan.DNS.Upstream...),
		dialer:   upstream,
		log:      log,
		timeout:  DefaultTimeout,
		slots:    make(chan struct{}, DefaultMaxInFlight),
		maxPend:  DefaultMaxInFlight + DefaultMaxQueued,
	}
	if s.dialer == nil {
		s.dialer = &net.Dialer{}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.SetPlan(plan)
	return s
}

// SetPlan makes the resolver answer with the names of plan's endpoints on
// its networks with dns = true (an endpoint added or removed while the
// instance runs); a query in flight finishes with the names it started
// with. The upstream servers stay those New was given.
func (s *Server) SetPlan(plan *config.Plan) {
	nm := &names{zones: map[string]*zone{}, views: map[view][]*zone{}, known: map[string]bool{}}
	for _, n := range plan.Networks {
		if n.DNS {
			nm.zones[n.Name] = buildZone(plan, n)
		}
	}
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			z := nm.zones[ifc.Network]
			if z == nil || !ifc.IP.IsValid() {
				continue
			}
			zs := []*zone{z}
			for _, other := range ep.Interfaces {
				if oz := nm.zones[other.Network]; oz != nil && !slices.Contains(zs, oz) {
					zs = append(zs, oz)
				}
			}
			if len(zs) > 1 {
				nm.views[view{ifc.Network, ifc.IP}] = zs
			}
		}
		nm.known[strings.ToLower(ep.Name)] = true
		for _, al := range ep.Aliases {
			nm.known[strings.ToLower(al)] = true
		}
	}
	s.names.Store(nm)
}

// Serves reports whether network has the embedded DNS.
func (s *Server) Serves(network string) bool { return s.names.Load().zones[network] != nil }

// view is who asks: a network and an address on it.
type view struct {
	network string
	addr    netip.Addr
}

// zonesFor returns the zones visible to src asking on network.
func (nm *names) zonesFor(network string, src netip.Addr) []*zone {
	if zs, ok := nm.views[view{network, src}]; ok {
		return zs
	}
	return []*zone{nm.zones[network]}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries:     s.c.queries.Load(),
		Answered:    s.c.answered.Load(),
		NXDomain:    s.c.nxdomain.Load(),
		Refused:     s.c.refused.Load(),
		Forwarded:   s.c.forwarded.Load(),
		Overflow:    s.c.overflow.Load(),
		Truncated:   s.c.truncated.Load(),
		UpstreamErr: s.c.upstreamErr.Load(),
		Malformed:   s.c.malformed.Load(),
	}
}

// Close cancels the forwarded queries in flight and waits for their
// workers; none replies after Close returns.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// outcome is what resolve decided.
type outcome int

const (
	outDrop    outcome = iota // malformed, or a network without DNS: no reply
	outReply                  // answered locally
	outForward                // for the upstream servers
)

// Answer answers a query that arrived on network from what the resolver
// knows, synchronously and without I/O. ok is false when there is nothing
// to send: the query is malformed (dropped and counted), the network has no
// DNS, or the name is for the upstream servers (Query forwards those).
func (s *Server) Answer(network string, query []byte) (reply []byte, ok bool) {
	r, out, _ := s.resolve(network, netip.Addr{}, query, false)
	return r, out == outReply
}

// Query is the hook of the UDP service: it answers a query that arrived on network
// from src:sport (an endpoint on several networks with DNS sees the names of
// all of them, its address on network first) by calling reply with the response payload, either before
// it returns (local names) or later from a worker goroutine (forwarded
// names). It returns false, having done nothing, when network has no DNS.
// payload is not kept after Query returns.
func (s *Server) Query(network string, src [4]byte, sport uint16, payload []byte, replyFn func(payload []byte)) bool {
	return s.query(network, src, sport, payload, false, replyFn)
}

func (s *Server) query(network string, src [4]byte, sport uint16, payload []byte, tcp bool, replyFn func(payload []byte)) bool {
	if !s.Serves(network) {
		return false
	}
	r, out, q := s.resolve(network, netip.AddrFrom4(src), payload, tcp)
	switch out {
	case outReply:
		replyFn(r)
	case outForward:
		s.forward(q, append([]byte(nil), payload...), tcp, replyFn, netip.AddrFrom4(src), sport)
	}
	return true
}

// resolve parses query and decides: a local reply, a drop, or forwarding
// (q is then the parsed query, for the SERVFAIL should no upstream answer).
func (s *Server) resolve(network string, src netip.Addr, query []byte, tcp bool) ([]byte, outcome, *miekg.Msg) {
	nm := s.names.Load()
	if nm.zones[network] == nil {
		return nil, outDrop, nil
	}
	q := new(miekg.Msg)
	if err := q.Unpack(query); err != nil || q.Response {
		s.c.malformed.Add(1)
		return nil, outDrop, nil
	}
	s.c.queries.Add(1)
	if q.Opcode != miekg.OpcodeQuery {
		return s.pack(q, miekg.RcodeNotImplemented, nil, tcp), outReply, nil
	}
	if len(q.Question) != 1 {
		return s.pack(q, miekg.RcodeFormatError, nil, tcp), outReply, nil
	}
	qs := q.Question[0]
	name := strings.TrimSuffix(strings.ToLower(qs.Name), ".")
	if qs.Qclass == miekg.ClassINET || qs.Qclass == miekg.ClassANY {
		if rr, rcode, local := s.local(nm, nm.zonesFor(network, src), qs, name); local {
			return s.pack(q, rcode, rr, tcp), outReply, nil
		}
	}
	if len(s.upstream) == 0 {
		s.c.refused.Add(1)
		return s.pack(q, miekg.RcodeRefused, nil, tcp), outReply, nil
	}
	return nil, outForward, q
}

// local answers qs from zones, in order, when the name is theirs to answer.
func (s *Server) local(nm *names, zones []*zone, qs miekg.Question, name string) (rr []miekg.RR, rcode int, local bool) {
	hdr := func(t uint16) miekg.RR_Header {
		return miekg.RR_Header{Name: qs.Name, Rrtype: t, Class: miekg.ClassINET, Ttl: TTL}
	}
	if ip, ok := reverse(name); ok {
		i := slices.IndexFunc(zones, func(z *zone) bool { return z.contains(ip) })
		if i < 0 {
			return nil, 0, false // not our addresses: upstream's business
		}
		host, ok := zones[i].ptr[ip]
		if !ok {
			s.c.nxdomain.Add(1)
			return nil, miekg.RcodeNameError, true
		}
		if qs.Qtype == miekg.TypePTR || qs.Qtype == miekg.TypeANY {
			rr = append(rr, &miekg.PTR{Hdr: hdr(miekg.TypePTR), Ptr: miekg.Fqdn(host)})
			s.c.answered.Add(1)
		}
		return rr, miekg.RcodeSuccess, true
	}
	var ips []netip.Addr
	inZone := false
	if name == HostName && zones[0].gateway.IsValid() {
		ips = []netip.Addr{zones[0].gateway}
	}
	for _, z := range zones {
		if len(ips) > 0 {
			break
		}
		found, in := z.lookup(name)
		if len(found) > 0 {
			ips = found
			break
		}
		inZone = inZone || in
	}
	if len(ips) == 0 {
		// Unknown single labels go upstream, as Docker's resolver sends
		// them, unless there is none.
		single := name != "" && !strings.Contains(name, ".")
		if inZone || nm.known[name] || single && len(s.upstream) == 0 {
			s.c.nxdomain.Add(1)
			return nil, miekg.RcodeNameError, true
		}
		return nil, 0, false
	}
	for _, ip := range ips {
		switch {
		case ip.Is4() && (qs.Qtype == miekg.TypeA || qs.Qtype == miekg.TypeANY):
			rr = append(rr, &miekg.A{Hdr: hdr(miekg.TypeA), A: net.IP(ip.AsSlice())})
		case ip.Is6() && (qs.Qtype == miekg.TypeAAAA || qs.Qtype == miekg.TypeANY):
			rr = append(rr, &miekg.AAAA{Hdr: hdr(miekg.TypeAAAA), AAAA: net.IP(ip.AsSlice())})
		}
	}
	if len(rr) > 0 {
		s.c.answered.Add(1)
	}
	// Every other type of a local name, and AAAA of one without IPv6:
	// NOERROR with no answer.
	return rr, miekg.RcodeSuccess, true
}

// pack builds the response to q, truncated to what the client can take
// in a datagram unless it came over TCP.
func (s *Server) pack(q *miekg.Msg, rcode int, answer []miekg.RR, tcp bool) []byte {
	m := new(miekg.Msg)
	m.SetReply(q)
	m.Rcode = rcode
	m.Authoritative = rcode == miekg.RcodeSuccess || rcode == miekg.RcodeNameError
	m.RecursionAvailable = len(s.upstream) > 0
	m.Answer = answer
	size := miekg.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
		m.SetEdns0(uint16(min(size, 4096)), false)
	}
	if tcp {
		size = miekg.MaxMsgSize
	}
	m.Truncate(size)
	b, err := m.Pack()
	if err != nil {
		s.log.Debug("dns: packing a reply", "err", err)
		m = new(miekg.Msg)
		m.SetRcode(q, miekg.RcodeServerFailure)
		b, _ = m.Pack()
	}
	return b
}

// forward sends query to the upstream servers on a goroutine of its own,
// which waits for one of the slots when they are all taken; when the
// queue is full too, it answers SERVFAIL at once. A query that came over
// TCP is forwarded over TCP.
func (s *Server) forward(q *miekg.Msg, query []byte, tcp bool, replyFn func([]byte), src netip.Addr, sport uint16) {
	if s.pending.Add(1) > s.maxPend {
		s.pending.Add(-1)
		s.c.overflow.Add(1)
		replyFn(s.pack(q, miekg.RcodeServerFailure, nil, tcp))
		return
	}
	s.c.forwarded.Add(1)
	s.wg.Add(1)
	go func() {
		defer func() { s.pending.Add(-1); s.wg.Done() }()
		select {
		case s.slots <- struct{}{}:
		case <-s.ctx.Done():
			return // closing: nobody to answer
		}
		r, ok := s.exchange(query, q.Id, tcp)
		<-s.slots
		if ok {
			replyFn(s.fit(q, r, tcp))
			return
		}
		if s.ctx.Err() != nil {
			return
		}
		s.c.upstreamErr.Add(1)
		s.log.Debug("dns: no upstream answered", "name", q.Question[0].Name, "client", src, "port", sport)
		replyFn(s.pack(q, miekg.RcodeServerFailure, nil, tcp))
	}()
}

// fit makes an upstream answer r fit what the client of query q takes in a
// datagram (512 bytes, or its EDNS size): truncated, with TC set, when it
// does not, so the client asks again over TCP.
func (s *Server) fit(q *miekg.Msg, r []byte, tcp bool) []byte {
	size := miekg.MinMsgSize
	if opt := q.IsEdns0(); opt != nil {
		size = max(size, int(opt.UDPSize()))
	}
	if tcp || len(r) <= size {
		return r
	}
	m := new(miekg.Msg)
	if err := m.Unpack(r); err != nil {
		return r // exchange returns only what parses
	}
	m.Truncate(size)
	b, err := m.Pack()
	if err != nil {
		return s.pack(q, miekg.RcodeServerFailure, nil, false)
	}
	return b
}

// exchange asks each upstream server in turn, with a timeout each, and
// returns the first response that matches the query's ID: over TCP for a
// query that came over TCP, else over UDP and again over TCP when the
// answer is truncated.
func (s *Server) exchange(query []byte, id uint16, tcp bool) ([]byte, bool) {
	for _, up := range s.upstream {
		if !tcp {
			r, ok := s.ask(up, "udp", query, id)
			if ok && r[2]&0x02 == 0 { // TC clear
				return r, true
			}
			if ok {
				s.c.truncated.Add(1)
				if full, ok := s.ask(up, "tcp", query, id); ok {
					return full, true
				}
				return r, true // the truncated answer is an answer still
			}
		} else if r, ok := s.ask(up, "tcp", query, id); ok {
			return r, true
		}
		if s.ctx.Err() != nil {
			return nil, false
		}
	}
	return nil, false
}

// ask sends query to one upstream server over network (udp or tcp) and
// returns its response.
func (s *Server) ask(up, network string, query []byte, id uint16) ([]byte, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	c, err := s.dialer.DialContext(ctx, network, up)
	if err != nil {
		s.log.Debug("dns: dialling upstream", "upstream", up, "net", network, "err", err)
		return nil, false
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if network == "tcp" {
		return askStream(c, query, id)
	}
	if _, err := c.Write(query); err != nil {
		s.log.Debug("dns: writing to upstream", "upstream", up, "err", err)
		return nil, false
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			s.log.Debug("dns: reading from upstream", "upstream", up, "err", err)
			return nil, false
		}
		if isResponse(buf[:n], id) {
			return append([]byte(nil), buf[:n]...), true
		}
	}
}

// askStream exchanges query for its response on a TCP connection, each
// message with its two-byte length.
func askStream(c net.Conn, query []byte, id uint16) ([]byte, bool) {
	if len(query) > 0xffff {
		return nil, false
	}
	out := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(out, uint16(len(query)))
	copy(out[2:], query)
	if _, err := c.Write(out); err != nil {
		return nil, false
	}
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, false
		}
		r := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, r); err != nil {
			return nil, false
		}
		if isResponse(r, id) {
			return r, true
		}
	}
}

// isResponse reports whether b is a DNS response (QR set) with ID id that
// parses; anything else from upstream is ignored.
func isResponse(b []byte, id uint16) bool {
	if len(b) < 12 || binary.BigEndian.Uint16(b) != id || b[2]&0x80 == 0 {
		return false
	}
	return new(miekg.Msg).Unpack(b) == nil
}
