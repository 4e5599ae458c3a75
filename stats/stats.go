// Package stats owns the per-port counters of the datapath: packets and
// bytes received and sent, and dropped frames by reason. Counters are atomic
// so any datapath goroutine may count without a lock.
//
// This package is internal to uswitch: its API may change without notice,
// except for [Snapshot], which uswitchtest.Network.Ports returns.
// Code outside uswitch uses package uswitchtest.
package stats

import "sync/atomic"

// Reason says why a frame was dropped.
type Reason uint8

// Drop reasons, shared by every stage so `uswitch ports` reads the same names
// everywhere.
const (
	Truncated      Reason = iota // shorter than its headers say
	BadSrcMAC                    // multicast or zero source MAC
	PortSecurity                 // port security: source MAC not the endpoint's own
	SamePort                     // destination learned on the ingress port
	TxError                      // the egress device refused the frame
	BadARP                       // an ARP packet that is not Ethernet/IPv4 or is cut short
	BadIPHeader                  // an IPv4 header that does not parse
	BadChecksum                  // an IPv4 header checksum that does not verify
	Martian                      // a source or destination no router forwards
	NotForwarded                 // broadcast, multicast or non-IPv4 traffic a router does not route
	TTLExceeded                  // TTL or IPv6 hop limit ran out here (answered with time exceeded)
	NoRoute                      // no route to the destination (answered with net unreachable)
	Isolated                     // forwarding between networks that isolation forbids
	FragNeeded                   // DF set and the egress MTU too small (answered with frag needed)
	NeighFailed                  // the next hop did not answer ARP or NDP (answered with host or address unreachable)
	NeighQueue                   // dropped from a full queue waiting for ARP or NDP resolution
	Filtered                     // dropped or rejected by a [[rule]]
	ConntrackFull                // a new connection the full connection table refused
	SpoofedIP                    // port security: an IPv4 source not the endpoint's own (nor 0.0.0.0)
	SpoofedARP                   // port security: an ARP sender MAC or IP not the endpoint's own
	CtInvalid                    // a packet conntrack finds invalid, dropped at the forward hook
	CtClash                      // a new connection whose translated tuple another one holds (insert_failed)
	FragOverlap                  // a fragment overlapping another of its datagram: the datagram is dropped
	FragDup                      // a fragment that repeats one already held
	FragOversize                 // a fragment reaching beyond 65535 bytes, or inconsistent with the datagram's end
	FragMemory                   // a fragment refused because reassembly memory is at its bound
	FragTimeout                  // a datagram whose fragments did not all arrive in time (counted per fragment held)
	SourceRoute                  // an IPv4 packet with a source route option (accept_source_route=0)
	BadIPOptions                 // IPv4 options whose lengths do not parse
	MTUExceeded                  // a frame larger than the egress port's MTU
	Tagged                       // port security: an 802.1Q or 802.1ad tagged frame from an endpoint
	DHCPServer                   // port security: a DHCP server message (UDP source port 67) from an endpoint (DHCP snooping)
	LinkLocalGroup               // a frame to 01:80:c2:00:00:0X (STP, LLDP, 802.1X), which no bridge forwards
	RAGuard                      // port security: a router advertisement, redirect or router renumbering from an endpoint (RA guard)
	SpoofedIPv6                  // port security: an IPv6 source not the endpoint's link-local (EUI-64) or configured address, nor ::
	SpoofedND                    // port security: neighbour discovery for an address or a MAC not the endpoint's
	BadND                        // a neighbour solicitation or advertisement RFC 4861 says to drop (hop limit not 255, bad options)
	PacketTooBig                 // an IPv6 packet larger than the egress MTU (answered with packet too big; routers do not fragment IPv6)
	RingTruncated                // a frame a veth's receive ring holds cut short: too large for its slot, and the socket too full for the whole
	RingMalformed                // a veth's receive ring slot whose header does not add up
	numReasons
)

var reasonNames = [numReasons]string{
	Truncated:      "truncated",
	BadSrcMAC:      "bad-src-mac",
	PortSecurity:   "port-security",
	SamePort:       "same-port",
	TxError:        "tx-error",
	BadARP:         "bad-arp",
	BadIPHeader:    "bad-ip-header",
	BadChecksum:    "bad-checksum",
	Martian:        "martian",
	NotForwarded:   "not-forwarded",
	TTLExceeded:    "ttl-exceeded",
	NoRoute:        "no-route",
	Isolated:       "isolated",
	FragNeeded:     "frag-needed",
	NeighFailed:    "neigh-failed",
	NeighQueue:     "neigh-queue-full",
	Filtered:       "filtered",
	ConntrackFull:  "conntrack-full",
	SpoofedIP:      "spoofed-ip",
	SpoofedARP:     "spoofed-arp",
	CtInvalid:      "ct-invalid",
	CtClash:        "ct-clash",
	FragOverlap:    "frag-overlap",
	FragDup:        "frag-dup",
	FragOversize:   "frag-oversize",
	FragMemory:     "frag-memory",
	FragTimeout:    "frag-timeout",
	SourceRoute:    "source-route",
	BadIPOptions:   "bad-ip-options",
	MTUExceeded:    "mtu-exceeded",
	Tagged:         "vlan-tagged",
	DHCPServer:     "dhcp-server",
	LinkLocalGroup: "link-local-group",
	RAGuard:        "ra-guard",
	SpoofedIPv6:    "spoofed-ipv6",
	SpoofedND:      "spoofed-nd",
	BadND:          "bad-nd",
	PacketTooBig:   "packet-too-big",
	RingTruncated:  "ring-truncated",
	RingMalformed:  "ring-malformed",
}

func (r Reason) String() string { return reasonNames[r] }

// Port holds one port's counters. Receive counters have one writer, the
// port's reader (its goroutine, or the busy-poll thread), so they are bumped
// without a locked instruction;
// send counters are shared by every ingress goroutine. The two groups sit on
// separate cache lines so readers of different ports do not contend.
type Port struct {
	RxPackets, RxBytes atomic.Uint64
	_                  [48]byte
	TxPackets, TxBytes atomic.Uint64
	_                  [48]byte
	drops              [numReasons]atomic.Uint64
}

// Rx counts a received frame of n bytes. Only the port's reader may call it.
func (p *Port) Rx(n int) {
	p.RxPackets.Store(p.RxPackets.Load() + 1)
	p.RxBytes.Store(p.RxBytes.Load() + uint64(n))
}

// RxShared counts a received frame on a port that several goroutines feed
// (a router port, into which every reader may route).
func (p *Port) RxShared(n int) {
	p.RxPackets.Add(1)
	p.RxBytes.Add(uint64(n))
}

// Tx counts a sent frame of n bytes.
func (p *Port) Tx(n int) {
	p.TxPackets.Add(1)
	p.TxBytes.Add(uint64(n))
}

// Drop counts a frame dropped for reason r.
func (p *Port) Drop(r Reason) { p.drops[r].Add(1) }

// Dropped returns the count for one reason.
func (p *Port) Dropped(r Reason) uint64 { return p.drops[r].Load() }

// Snapshot is a plain copy of a port's counters, for the API and the CLI.
type Snapshot struct {
	RxPackets uint64            `json:"rx_packets"`
	RxBytes   uint64            `json:"rx_bytes"`
	TxPackets uint64            `json:"tx_packets"`
	TxBytes   uint64            `json:"tx_bytes"`
	Drops     map[string]uint64 `json:"drops"`
}

// Snapshot copies the counters; drop reasons with a zero count are left out.
func (p *Port) Snapshot() Snapshot {
	s := Snapshot{
		RxPackets: p.RxPackets.Load(), RxBytes: p.RxBytes.Load(),
		TxPackets: p.TxPackets.Load(), TxBytes: p.TxBytes.Load(),
		Drops: map[string]uint64{},
	}
	for r := range numReasons {
		if n := p.drops[r].Load(); n > 0 {
			s.Drops[r.String()] = n
		}
	}
	return s
}
