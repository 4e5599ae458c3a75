package uswitchtest

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/uswitch-dev/uswitch/gso"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// Port is one in-memory device of a Network: an endpoint interface or the
// uplink's host side. A test either exchanges raw frames with Send and Recv
// or, once it has called Stack, lets a userspace TCP/IP stack own the port:
// from then on the frames the datapath writes go to the stack, and Recv
// sees none of them.
type Port struct {
	n        *Network
	name     string
	mac      packet.MAC
	addr     netip.Prefix
	mtu      int
	gateway  netip.Addr // default route; invalid for the host side
	resolver netip.Addr // the embedded DNS; invalid without dns = true
	routes   []route    // besides the default route and the on-link subnet

	mem     *devPort
	deliver atomic.Pointer[Stack] // set by Stack
	st      *Stack
}

// queueDepth is how many frames each direction of a port buffers.
const queueDepth = 1024

func newPort(n *Network, name string, mac packet.MAC, addr netip.Prefix, mtu int) *Port {
	p := &Port{n: n, name: name, mac: mac, addr: addr, mtu: mtu}
	p.mem = &devPort{Mem: tap.NewMem(queueDepth), p: p}
	return p
}

// Name returns the port's name: the switch port name of an endpoint
// interface, "host" for the uplink's host side.
func (p *Port) Name() string { return p.name }

// MAC returns the port's MAC address.
func (p *Port) MAC() packet.MAC { return p.mac }

// Addr returns the port's address with its subnet's length.
func (p *Port) Addr() netip.Prefix { return p.addr }

// Send hands frame (a whole Ethernet frame) to the datapath as if the
// endpoint had sent it. The frame is copied.
func (p *Port) Send(frame []byte) { p.mem.Inject(frame) }

// Recv returns the next frame the datapath sent to this port, or nil when
// none arrives within timeout.
func (p *Port) Recv(timeout time.Duration) []byte { return p.mem.Recv(timeout) }

// devPort is the tap.Port the datapath sees: a tap.Mem whose written
// frames go to the port's stack once it has one.
type devPort struct {
	*tap.Mem
	p *Port
}

// WriteFrame implements tap.Port.
func (d *devPort) WriteFrame(frame []byte, off packet.Offload) error {
	s := d.p.deliver.Load()
	if s == nil {
		return d.Mem.WriteFrame(frame, off)
	}
	return gso.Wire(frame, off, func(b []byte) error {
		s.input(b)
		return nil
	})
}
