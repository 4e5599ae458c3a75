package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

// Filter is a small frame filter in the spirit of tcpdump's simplest
// expressions: terms joined by "and", each one of `host IP`, `net CIDR`,
// `port N` (TCP or UDP, either side), `proto tcp|udp|icmp|arp` or the bare
// protocol name. The zero Filter matches every frame.
type Filter struct {
	terms []term
}

type term struct {
	kind  string // host, net, port, proto
	pfx   netip.Prefix
	port  uint16
	proto string
}

// ParseFilter parses an expression; "" matches everything.
func ParseFilter(expr string) (Filter, error) {
	var f Filter
	words := strings.Fields(expr)
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "and" || w == "&&" {
			if i == 0 || i == len(words)-1 {
				return f, fmt.Errorf("filter %q: %q joins two terms", expr, w)
			}
			continue
		}
		switch w {
		case "tcp", "udp", "icmp", "arp":
			f.terms = append(f.terms, term{kind: "proto", proto: w})
			continue
		case "host", "net", "port", "proto":
		default:
			return f, fmt.Errorf("filter %q: unknown term %q (want host, net, port, proto, tcp, udp, icmp, arp, and)", expr, w)
		}
		if i+1 >= len(words) {
			return f, fmt.Errorf("filter %q: %s needs a value", expr, w)
		}
		i++
		v := words[i]
		t := term{kind: w}
		switch w {
		case "host":
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return f, fmt.Errorf("filter %q: host %q: not an IPv4 address", expr, v)
			}
			t.pfx = netip.PrefixFrom(a, 32)
		case "net":
			p, err := netip.ParsePrefix(v)
			if err != nil || !p.Addr().Is4() {
				return f, fmt.Errorf("filter %q: net %q: not an IPv4 prefix", expr, v)
			}
			t.pfx = p.Masked()
		case "port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return f, fmt.Errorf("filter %q: port %q: not a port number", expr, v)
			}
			t.port = uint16(n)
		case "proto":
			switch v {
			case "tcp", "udp", "icmp", "arp":
			default:
				return f, fmt.Errorf("filter %q: proto %q: want tcp, udp, icmp or arp", expr, v)
			}
			t.proto = v
		}
		f.terms = append(f.terms, t)
	}
	return f, nil
}

// Match reports whether an Ethernet frame matches every term.
func (f Filter) Match(frame []byte) bool {
	if len(f.terms) == 0 {
		return true
	}
	e := packet.Ethernet(frame)
	if !e.Valid() {
		return false
	}
	var src, dst [4]byte
	var proto string
	var sport, dport uint16
	hasPorts := false
	switch e.EtherType() {
	case packet.EtherTypeARP:
		a := packet.ARP(e.Payload())
		if !a.Valid() {
			return false
		}
		proto, src, dst = "arp", a.SenderIP(), a.TargetIP()
	case packet.EtherTypeIPv4:
		ip := packet.IPv4(e.Payload())
		if !ip.Valid() {
			return false
		}
		src, dst = ip.Src(), ip.Dst()
		switch ip.Protocol() {
		case packet.ProtoTCP:
			proto = "tcp"
		case packet.ProtoUDP:
			proto = "udp"
		case packet.ProtoICMP:
			proto = "icmp"
		}
		if pt := packet.Ports(ip.Payload()); (proto == "tcp" || proto == "udp") && pt.Valid() && !ip.IsFragment() {
			sport, dport, hasPorts = pt.Src(), pt.Dst(), true
		}
	default:
		return false
	}
	for _, t := range f.terms {
		var ok bool
		switch t.kind {
		case "host", "net":
			ok = t.pfx.Contains(netip.AddrFrom4(src)) || t.pfx.Contains(netip.AddrFrom4(dst))
		case "port":
			ok = hasPorts && (sport == t.port || dport == t.port)
		case "proto":
			ok = proto == t.proto
		}
		if !ok {
			return false
		}
	}
	return true
}

// Event is one real frame followed through the datapath.
type Event struct {
	Time    time.Time `json:"time"`
	Network string    `json:"network,omitempty"` // where it entered ("" for the uplink)
	Port    string    `json:"port"`
	Steps   []Step    `json:"steps"`
	Verdict Verdict   `json:"verdict"`
}

// Live follows the real frames that match its port, network and filter,
// at most Rate a second, and hands each one's steps to Events. It never
// blocks the datapath: a frame beyond the rate, or whose event finds
// Events full, is not followed (and counted in Missed).
type Live struct {
	Port, Network string
	Filter        Filter
	// Events receives the followed frames; the datapath never waits on it.
	Events chan Event
	// Missed counts matching frames not followed: over the rate or with
	// Events full.
	Missed atomic.Uint64

	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

// DefaultRate is how many frames a second a live trace follows at most.
const DefaultRate = 100

// NewLive returns a live trace of the frames entering port (any, when "")
// of network (any, when ""; rule.Uplink for the uplink) that match f, at most
// rate frames a second (DefaultRate when 0).
func NewLive(port, network string, f Filter, rate float64) *Live {
	if rate <= 0 {
		rate = DefaultRate
	}
	return &Live{Port: port, Network: network, Filter: f, Events: make(chan Event, 256), rate: rate, tokens: rate}
}

// Wants reports whether the frame that entered port of network is to be
// followed: it matches and the rate allows it.
func (l *Live) Wants(network, port string, frame []byte) bool {
	if l.Port != "" && l.Port != port || l.Network != "" && l.Network != network && !(l.Network == rule.Uplink && network == "") {
		return false
	}
	if !l.Filter.Match(frame) {
		return false
	}
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	ok := l.tokens >= 1
	if ok {
		l.tokens--
	}
	l.mu.Unlock()
	if !ok {
		l.Missed.Add(1)
	}
	return ok
}

// Done hands a followed frame's steps to Events, unless it is full.
func (l *Live) Done(network, port string, rec *Recorder) {
	select {
	case l.Events <- Event{Time: time.Now(), Network: network, Port: port, Steps: rec.Steps, Verdict: rec.Verdict()}:
	default:
		l.Missed.Add(1)
	}
}

// ErrTooManyLive is returned when MaxLive live traces already run.
var ErrTooManyLive = errors.New("trace: too many live traces at once")

// MaxLive bounds the live traces that run at once.
const MaxLive = 4
