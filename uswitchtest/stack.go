package uswitchtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/uswitch-dev/uswitch/proxy"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	loopbackLink "gvisor.dev/gvisor/pkg/tcpip/link/loopback"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

// Stack is a userspace TCP/IP stack (gVisor's netstack) on one Port, with
// the port's MAC and address, a loopback 127.0.0.1/8, a route to its subnet, a default route via
// its gateway (the host side: routes to the networks via the uplink
// address) and, on a network with dns = true, the embedded DNS as its
// resolver. Its methods have the signatures of package net's, so that
// code under test takes them in place of net.Dialer.DialContext,
// net.Listen, net.ListenPacket and net.Resolver.LookupHost.
type Stack struct {
	p      *Port
	s      *stack.Stack
	ch     *channel.Endpoint
	cancel context.CancelFunc
	done   chan struct{} // closed when the pump has returned
}

// The stack's NICs: the port's, and a loopback with 127.0.0.1/8 as every
// namespace has.
const (
	nic tcpip.NICID = 1
	lo  tcpip.NICID = 2
)

// loopback is lo's address.
var loopback = tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4([4]byte{127, 0, 0, 1}), PrefixLen: 8}

// Stack returns the port's stack, made on the first call; from then on the
// frames sent to the port go to it (Recv sees none). A stack that cannot be
// made fails the test. The host side's stack, when [uplink] has
// userland_proxy = true (the default), comes with the userland proxy that
// `uswitch run` starts: it listens on the stack's 0.0.0.0:HOSTPORT (so
// 127.0.0.1:HOSTPORT and host_address:HOSTPORT) for every published port
// and relays each TCP connection and UDP flow to the endpoint's address and
// container port, which sees it come from host_address.
func (p *Port) Stack() *Stack {
	s, err := p.stack()
	if err != nil {
		p.n.fail("%v", err)
	}
	return s
}

// stack is Stack for any goroutine: it returns an error instead of failing
// the test.
func (p *Port) stack() (*Stack, error) {
	n := p.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if p.st != nil {
		return p.st, nil
	}
	if n.closed {
		return nil, fmt.Errorf("port %q: the network is closed", p.name)
	}
	s, err := newStack(p)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", p.name, err)
	}
	if p == n.host && n.plan.Uplink.UserlandProxy {
		// What `uswitch run` starts in the uplink's namespace.
		px, err := proxy.StartOn(context.Background(), s, proxy.Mappings(n.plan), nil)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("port %q: userland proxy: %w", p.name, err)
		}
		n.proxy = px
	}
	p.st = s
	n.stacks = append(n.stacks, s)
	p.deliver.Store(s)
	return s, nil
}

func newStack(p *Port) (*Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4},
		HandleLocal:        true,
	})
	ch := channel.New(queueDepth, uint32(p.mtu+header.EthernetMinimumSize), tcpip.LinkAddress(p.mac[:]))
	fail := func(what string, e tcpip.Error) (*Stack, error) {
		s.Close()
		s.Wait()
		ch.Close()
		return nil, fmt.Errorf("netstack: %s: %s", what, e)
	}
	if e := s.CreateNIC(nic, ethernet.New(ch)); e != nil {
		return fail("NIC", e)
	}
	if e := s.CreateNIC(lo, loopbackLink.New()); e != nil {
		return fail("loopback NIC", e)
	}
	if e := s.AddProtocolAddress(lo, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: loopback}, stack.AddressProperties{}); e != nil {
		return fail("address "+loopback.String(), e)
	}
	addr := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(p.addr.Addr().As4()), PrefixLen: p.addr.Bits()}
	if e := s.AddProtocolAddress(nic, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr}, stack.AddressProperties{}); e != nil {
		return fail("address "+p.addr.String(), e)
	}
	routes := []tcpip.Route{{Destination: loopback.Subnet(), NIC: lo}, {Destination: addr.Subnet(), NIC: nic}}
	for _, r := range p.routes {
		dst := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(r.dst.Addr().As4()), PrefixLen: r.dst.Bits()}
		routes = append(routes, tcpip.Route{Destination: dst.Subnet(), Gateway: tcpip.AddrFrom4(r.via.As4()), NIC: nic})
	}
	if p.gateway.Is4() {
		routes = append(routes, tcpip.Route{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(p.gateway.As4()), NIC: nic})
	}
	s.SetRouteTable(routes)
	ctx, cancel := context.WithCancel(context.Background())
	st := &Stack{p: p, s: s, ch: ch, cancel: cancel, done: make(chan struct{})}
	go st.pump(ctx)
	return st, nil
}

// pump carries the frames the stack sends to the datapath.
func (s *Stack) pump(ctx context.Context) {
	defer close(s.done)
	for {
		pkt := s.ch.ReadContext(ctx)
		if pkt == nil {
			return
		}
		v := pkt.ToView()
		s.p.mem.Inject(v.AsSlice())
		v.Release()
		pkt.DecRef()
	}
}

// input hands the stack one frame the datapath sent to the port.
func (s *Stack) input(frame []byte) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	s.ch.InjectInbound(0, pkt) // the ethernet endpoint reads the EtherType
	pkt.DecRef()
}

// close stops the stack's endpoints, its goroutines and the pump.
func (s *Stack) close() {
	s.cancel()
	<-s.done
	s.s.Close()
	s.s.Wait()
	s.ch.Close()
	s.s.Destroy()
}

// DialContext connects to addr ("host:port"; host an address or a name
// that LookupHost resolves) on network "tcp", "tcp4", "udp" or "udp4",
// like net.Dialer.DialContext.
func (s *Stack) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	ips, err := s.LookupHost(ctx, host)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	var errs []error
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			continue
		}
		to := tcpip.FullAddress{Addr: tcpip.AddrFrom4(a.As4()), Port: port}
		switch network {
		case "tcp", "tcp4":
			c, err := gonet.DialContextTCP(ctx, s.s, to, ipv4.ProtocolNumber)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		case "udp", "udp4":
			c, err := gonet.DialUDP(s.s, nil, &to, ipv4.ProtocolNumber)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		default:
			return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
		}
	}
	if len(errs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("%s: no IPv4 address", host)}
	}
	return nil, errors.Join(errs...)
}

// Listen listens on addr (":port" or "address:port"; port 0 picks one) on
// network "tcp" or "tcp4", like net.Listen.
func (s *Stack) Listen(network, addr string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	local, err := s.local(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return gonet.ListenTCP(s.s, local, ipv4.ProtocolNumber)
}

// ListenPacket listens on addr (":port" or "address:port"; port 0 picks
// one) on network "udp" or "udp4", like net.ListenPacket.
func (s *Stack) ListenPacket(network, addr string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	local, err := s.local(addr)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	return gonet.DialUDP(s.s, &local, nil, ipv4.ProtocolNumber)
}

// local parses a listening address: an empty host is any address.
func (s *Stack) local(addr string) (tcpip.FullAddress, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return tcpip.FullAddress{}, err
	}
	local := tcpip.FullAddress{Port: port}
	if host != "" && host != "0.0.0.0" {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return tcpip.FullAddress{}, fmt.Errorf("listen address %q: not an IPv4 address", host)
		}
		local.Addr = tcpip.AddrFrom4(a.As4())
	}
	return local, nil
}

func splitHostPort(addr string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: port %q is not a number", addr, port)
	}
	return host, uint16(p), nil
}
