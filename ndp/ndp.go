// Package ndp is the router's IPv6 neighbour table (RFC 4861): one Cache
// per router port that answers neighbour solicitations for the port's own
// addresses (its global address and its link-local one), resolves next hops
// with solicitations to their solicited-node multicast address, and learns
// from solicitations addressed to it and from advertisements. The states,
// timers and queue it keeps are package neigh's, which the IPv4 table
// (package arp) shares, so both show the same way in `uswitch neigh`.
//
// Lookup, the per-packet path, is lock-free and allocation-free; everything
// else (resolution, answers, timers) is the slow path.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package ndp

import (
	"sync"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/stats"
)

// Output is what a cache needs from the router port it serves: neighbour
// discovery frames go to its Wire.
type Output = neigh.Link

// Cache is the neighbour table of one router port: neigh's state machine
// with neighbour discovery on the wire.
type Cache struct {
	*neigh.Cache[[16]byte]
	mac  packet.MAC
	ip   [16]byte // the port's global address
	ll   [16]byte // its link-local address, from its MAC
	out  Output
	bufs sync.Pool
}

// New returns the cache of a router port owning ip (and the link-local
// address of mac) with mac.
func New(cfg neigh.Config, mac packet.MAC, ip [16]byte, clk clock.Clock, out Output) *Cache {
	c := &Cache{mac: mac, ip: ip, ll: mac.LinkLocal6(), out: out}
	c.Cache = neigh.New(cfg, clk, out, c.solicit)
	c.bufs.New = func() any { b := make([]byte, packet.NDPFrameLen); return &b }
	return c
}

// LinkLocal is the port's link-local address.
func (c *Cache) LinkLocal() [16]byte { return c.ll }

// Owns reports whether a is one of the port's addresses.
func (c *Cache) Owns(a [16]byte) bool { return a == c.ip || a == c.ll }

// Input handles a neighbour solicitation or advertisement m that arrived
// in ip (a LenValid packet whose upper layer m is) from the Ethernet
// source ethSrc. It checks what RFC 4861 7.1.1 and 7.1.2 say a node
// must (hop limit 255, code 0, the checksum, a unicast target, options
// that parse) and returns the reason to count a message that fails; it
// answers solicitations for the port's addresses and learns the
// solicitor, and learns from advertisements for entries it has.
func (c *Cache) Input(ip packet.IPv6, m packet.NDP, ethSrc packet.MAC) (stats.Reason, bool) {
	src, dst := ip.Src(), ip.Dst()
	if ip.HopLimit() != packet.NDPHopLimit || !m.Valid() || packet.ICMPv6(m).Code() != 0 {
		return stats.BadND, false
	}
	if !packet.ICMPv6(m).ChecksumValid(src, dst) {
		return stats.BadChecksum, false
	}
	target := m.Target()
	if packet.IsMulticast6(target) {
		return stats.BadND, false
	}
	switch packet.ICMPv6(m).Type() {
	case packet.ICMPv6NeighSolicit:
		slla, found, ok := m.LinkAddr(packet.NDPOptSourceLink)
		unspecified := src == [16]byte{}
		if !ok || unspecified && (found || dst != packet.SolicitedNode(target)) {
			return stats.BadND, false
		}
		if !c.Owns(target) {
			return 0, true // for a station: the switch floods it to them
		}
		if unspecified { // duplicate address detection: defend the address
			c.send(packet.ICMPv6NeighAdvert, packet.NAFlagRouter|packet.NAFlagOverride, packet.MulticastMAC6(packet.AllNodes6), target, packet.AllNodes6, target)
			return 0, true
		}
		to := ethSrc
		if found {
			to = slla
			c.Learn(src, slla, true)
		}
		c.send(packet.ICMPv6NeighAdvert, packet.NAFlagRouter|packet.NAFlagSolicited|packet.NAFlagOverride, to, target, src, target)
	case packet.ICMPv6NeighAdvert:
		tlla, found, ok := m.LinkAddr(packet.NDPOptTargetLink)
		if !ok || packet.IsMulticast6(dst) && m.Flags()&packet.NAFlagSolicited != 0 {
			return stats.BadND, false
		}
		if !found {
			tlla = ethSrc
		}
		if tlla.IsMulticast() || tlla.IsZero() || c.Owns(target) {
			return 0, true
		}
		c.Learn(target, tlla, false)
	}
	return 0, true
}

// send puts a neighbour discovery message from the port on the wire: an
// advertisement for target, or a solicitation, from src to dst.
func (c *Cache) send(typ, flags uint8, to packet.MAC, src, dst, target [16]byte) {
	bp := c.bufs.Get().(*[]byte)
	if typ == packet.ICMPv6NeighAdvert {
		c.out.Wire.WriteFrame(packet.PutNA(*bp, flags, to, c.mac, src, dst, target), packet.Offload{})
	} else {
		c.out.Wire.WriteFrame(packet.PutNS(*bp, to, c.mac, src, dst, target), packet.Offload{})
	}
	c.bufs.Put(bp)
}

// solicit sends a neighbour solicitation for ip: to its solicited-node
// multicast address, or (a stale probe) unicast to to. It comes from the
// port's address of ip's scope.
func (c *Cache) solicit(ip [16]byte, to packet.MAC) {
	src := c.ip
	if packet.IsLinkLocal6(ip) {
		src = c.ll
	}
	dst := ip
	if to == packet.Broadcast {
		dst = packet.SolicitedNode(ip)
		to = packet.MulticastMAC6(dst)
	}
	c.send(packet.ICMPv6NeighSolicit, 0, to, src, dst, ip)
}
