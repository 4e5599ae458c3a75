// Package arp is the router's IPv4 neighbour table: one Cache per router
// port that answers ARP for the port's own address, resolves next hops with
// ARP requests, and learns from requests addressed to it, replies and
// gratuitous ARP. The states, timers and queue it keeps are package
// neigh's, which the IPv6 table (package ndp) shares.
//
// Lookup, the per-packet path, is lock-free and allocation-free; everything
// else (resolution, replies, timers) is the slow path.
//
// This package is internal to uswitch: its API may change without notice.
// Code outside uswitch uses package uswitchtest.
package arp

import (
	"sync"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/neigh"
	"github.com/uswitch-dev/uswitch/packet"
)

// State is a neighbour entry's state (package neigh's).
type State = neigh.State

// Neighbour states.
const (
	Incomplete = neigh.Incomplete
	Reachable  = neigh.Reachable
	Stale      = neigh.Stale
	Failed     = neigh.Failed
)

// Config sets a cache's timers and limits (package neigh's).
type Config = neigh.Config

// Entry is a neighbour as `uswitch neigh` shows it.
type Entry = neigh.Entry

// Output is where a cache's frames go (package neigh's Link): ARP frames
// to its Wire.
type Output = neigh.Link

// Cache is the ARP table of one router port: neigh's state machine with
// ARP on the wire.
type Cache struct {
	*neigh.Cache[[4]byte]
	mac  packet.MAC
	ip   [4]byte
	out  Output
	bufs sync.Pool
}

// New returns the cache of a router port owning ip with mac.
func New(cfg Config, mac packet.MAC, ip [4]byte, clk clock.Clock, out Output) *Cache {
	c := &Cache{mac: mac, ip: ip, out: out}
	c.Cache = neigh.New(cfg, clk, out, c.request)
	c.bufs.New = func() any { b := make([]byte, packet.ARPFrameLen); return &b }
	return c
}

// Input handles an ARP packet that arrived on the port's network. It
// answers requests for the port's own address and learns the sender of
// such requests, of replies and of gratuitous ARP (only updating entries
// that exist, like Linux with arp_accept=0, except for requests to us).
func (c *Cache) Input(a packet.ARP) {
	sender, target := a.SenderIP(), a.TargetIP()
	smac := a.SenderMAC()
	if smac.IsMulticast() || smac.IsZero() {
		return
	}
	forUs := target == c.ip
	switch {
	case a.Op() == packet.ARPRequest && forUs && sender != [4]byte{}:
		c.Learn(sender, smac, true)
		c.send(packet.ARPReply, smac, smac, sender)
	case a.Op() == packet.ARPRequest && forUs:
		c.send(packet.ARPReply, smac, smac, sender) // an address probe (RFC 5227): answer, learn nothing
	case a.Op() == packet.ARPReply && forUs && sender != [4]byte{}: // 0.0.0.0 is no neighbour
		c.Learn(sender, smac, true)
	case sender == target && sender != [4]byte{}:
		c.Learn(sender, smac, false) // gratuitous ARP: update an existing entry
	}
}

// send puts an ARP message from the port about target on the wire.
func (c *Cache) send(op uint16, to, targetMAC packet.MAC, target [4]byte) {
	bp := c.bufs.Get().(*[]byte)
	c.out.Wire.WriteFrame(packet.PutARP(*bp, op, to, c.mac, c.ip, targetMAC, target), packet.Offload{})
	c.bufs.Put(bp)
}

// request sends a who-has for ip, broadcast or (a stale probe) unicast.
func (c *Cache) request(ip [4]byte, to packet.MAC) {
	c.send(packet.ARPRequest, to, packet.MAC{}, ip)
}
