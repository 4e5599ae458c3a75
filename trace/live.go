package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/rule"
)

// Filter is a small frame filter in the spirit of tcpdump's simplest
// expressions: terms joined by "and", each one of `host IP`, `net CIDR`
// (IPv4 or IPv6: it matches frames of that family), `port N` (TCP or UDP,
// either side, IPv4 or IPv6), `proto tcp|udp|icmp|icmp6|arp` or the bare
// protocol name, or `ip` / `ip6` (the family). As in tcpdump, `tcp` and
// `udp` match both families, `icmp` is ICMP for IPv4 only and `icmp6` is
// ICMPv6. IPv6's extension headers (hop-by-hop, routing, destination
// options, fragment) are walked to the TCP, UDP or ICMPv6 header. A
// fragment after the first has its protocol but no ports (on either
// family). The zero Filter matches every frame.
type Filter struct {
	terms []term
}

type term struct {
	kind  string // host (host and net), port, proto, family
	pfx   netip.Prefix
	port  uint16
	proto string // the protocol (proto) or the family: ip, ip6 (family)
}

// protos are the protocol names of `proto P` and the bare terms.
var protos = []string{"tcp", "udp", "icmp", "icmp6", "arp"}

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
		if slices.Contains(protos, w) {
			f.terms = append(f.terms, term{kind: "proto", proto: w})
			continue
		}
		switch w {
		case "ip", "ip6":
			f.terms = append(f.terms, term{kind: "family", proto: w})
			continue
		case "host", "net", "port", "proto":
		default:
			return f, fmt.Errorf("filter %q: unknown term %q (want host, net, port, proto, tcp, udp, icmp, icmp6, arp, ip, ip6, and)", expr, w)
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
			if err != nil || a.Zone() != "" {
				return f, fmt.Errorf("filter %q: host %q: not an IPv4 or IPv6 address", expr, v)
			}
			t.kind, t.pfx = "host", netip.PrefixFrom(a, a.BitLen())
		case "net":
			p, err := netip.ParsePrefix(v)
			if err != nil {
				return f, fmt.Errorf("filter %q: net %q: not an IPv4 or IPv6 prefix", expr, v)
			}
			t.kind, t.pfx = "host", p.Masked()
		case "port":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				return f, fmt.Errorf("filter %q: port %q: not a port number", expr, v)
			}
			t.port = uint16(n)
		case "proto":
			if !slices.Contains(protos, v) {
				return f, fmt.Errorf("filter %q: proto %q: want one of %s", expr, v, strings.Join(protos, ", "))
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
	var src, dst netip.Addr
	var family, proto string
	var l4 []byte // the TCP or UDP header, when the frame has it
	switch e.EtherType() {
	case packet.EtherTypeARP:
		a := packet.ARP(e.Payload())
		if !a.Valid() {
			return false
		}
		family, proto = "arp", "arp"
		src, dst = netip.AddrFrom4(a.SenderIP()), netip.AddrFrom4(a.TargetIP())
	case packet.EtherTypeIPv4:
		ip := packet.IPv4(e.Payload())
		if !ip.Valid() {
			return false
		}
		family = "ip"
		src, dst = netip.AddrFrom4(ip.Src()), netip.AddrFrom4(ip.Dst())
		proto = protoName(ip.Protocol(), packet.ProtoICMP, "icmp")
		if ip.FragmentOffset() == 0 {
			l4 = ip.Payload()
		}
	case packet.EtherTypeIPv6:
		ip := packet.IPv6(e.Payload())
		if !ip.LenValid() {
			return false
		}
		family = "ip6"
		src, dst = netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst())
		next, off, ok := ip.Upper()
		switch {
		case !ok: // extension headers cut short: the addresses only
		case next == packet.ProtoFragment6: // not the first fragment: no ports
			if fh, ok := ip.Fragment(); ok {
				proto = protoName(fh.NextHeader(), packet.ProtoICMPv6, "icmp6")
			}
		default:
			proto = protoName(next, packet.ProtoICMPv6, "icmp6")
			l4 = ip[off : packet.IPv6HeaderLen+int(ip.PayloadLen())]
		}
	default:
		return false
	}
	var sport, dport uint16
	pt := packet.Ports(l4)
	hasPorts := (proto == "tcp" || proto == "udp") && pt.Valid()
	if hasPorts {
		sport, dport = pt.Src(), pt.Dst()
	}
	for _, t := range f.terms {
		var ok bool
		switch t.kind {
		case "host":
			ok = t.pfx.Contains(src) || t.pfx.Contains(dst)
		case "port":
			ok = hasPorts && (sport == t.port || dport == t.port)
		case "proto":
			ok = proto == t.proto
		case "family":
			ok = family == t.proto
		}
		if !ok {
			return false
		}
	}
	return true
}

// protoName is the filter's name of an IP protocol number: tcp, udp, or
// icmpName for icmp (ICMP's number on IPv4, ICMPv6's on IPv6); "" for
// any other.
func protoName(p, icmp uint8, icmpName string) string {
	switch p {
	case packet.ProtoTCP:
		return "tcp"
	case packet.ProtoUDP:
		return "udp"
	case icmp:
		return icmpName
	}
	return ""
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
