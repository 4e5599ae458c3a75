package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpRelay serves one UDP mapping. Each client address is a flow with its
// own connected socket toward the target (so the target's replies can be
// told apart), and the replies go back to the client from the listening
// socket, so the client sees them come from the address it sent to.
type udpRelay struct {
	p       *Proxy
	m       Mapping
	ln      net.PacketConn
	dropped atomic.Uint64 // datagrams of new clients dropped because flows was full

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow // by client address
}

// udpFlow is one client's flow.
type udpFlow struct {
	client netip.AddrPort
	conn   net.Conn     // connected to the target, made on the proxy's Net
	last   atomic.Int64 // UnixNano of the last datagram either way
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// serve reads client datagrams until the listening socket is closed and
// forwards each on its client's flow.
func (r *udpRelay) serve() {
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := readFrom(r.ln, buf)
		if err != nil {
			if r.p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.p.log.Debug("userland proxy: udp read", append(r.m.attrs(), "err", err)...)
			continue
		}
		f := r.flow(client)
		if f == nil {
			continue
		}
		if _, err := f.conn.Write(buf[:n]); err != nil {
			r.p.log.Debug("userland proxy: udp send to target", append(r.m.attrs(), "client", client.String(), "err", err)...)
		}
	}
}

// flow returns client's flow, creating it (and its reply goroutine) if
// needed; nil if the table is full or the target socket cannot be made.
func (r *udpRelay) flow(client netip.AddrPort) *udpFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.flows[client]; f != nil {
		f.touch() // under mu, so that expire cannot race with this datagram
		return f
	}
	if len(r.flows) >= r.p.opts.maxFlows {
		if r.dropped.Add(1) == 1 {
			r.p.log.Warn("userland proxy: udp flow table full, dropping new clients", append(r.m.attrs(), "max", r.p.opts.maxFlows)...)
		}
		return nil
	}
	conn, err := r.p.net.DialContext(r.p.ctx, "udp", r.m.target(client.Addr()).String())
	if err != nil {
		r.p.log.Info("userland proxy: udp dial target", append(r.m.attrs(), "client", client.String(), "err", err)...)
		return nil
	}
	f := &udpFlow{client: client, conn: conn}
	f.touch()
	if !r.p.goTrack(conn, func() { r.reply(f) }) {
		conn.Close()
		return nil
	}
	r.flows[client] = f
	return f
}

// reply sends the target's datagrams back to the flow's client until the
// flow has been idle for the configured time or its socket is closed.
func (r *udpRelay) reply(f *udpFlow) {
	defer r.p.forget(f.conn)
	idle := r.p.opts.udpIdle
	buf := make([]byte, maxDatagram)
	for {
		f.conn.SetReadDeadline(time.Unix(0, f.last.Load()).Add(idle))
		n, err := f.conn.Read(buf)
		switch {
		case err == nil:
		case isTimeout(err):
			if r.expire(f, idle) {
				return
			}
			continue // the client sent something meanwhile
		case errors.Is(err, syscall.ECONNREFUSED):
			continue // an ICMP port unreachable for an earlier datagram
		default:
			r.expire(f, 0)
			return
		}
		f.touch()
		if _, err := writeTo(r.ln, buf[:n], f.client); err != nil {
			r.p.log.Debug("userland proxy: udp send to client", append(r.m.attrs(), "client", f.client.String(), "err", err)...)
		}
	}
}

// expire removes f from the table if it has been idle for at least idle.
func (r *udpRelay) expire(f *udpFlow, idle time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(time.Unix(0, f.last.Load())) < idle {
		return false
	}
	if r.flows[f.client] == f {
		delete(r.flows, f.client)
	}
	return true
}

// readFrom is ReadFromUDPAddrPort on any PacketConn (without allocating on
// the kernel's).
func readFrom(c net.PacketConn, b []byte) (int, netip.AddrPort, error) {
	if u, ok := c.(*net.UDPConn); ok {
		return u.ReadFromUDPAddrPort(b)
	}
	n, a, err := c.ReadFrom(b)
	if err != nil {
		return n, netip.AddrPort{}, err
	}
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return n, netip.AddrPort{}, fmt.Errorf("udp read: source %v is not a UDP address", a)
	}
	ap := ua.AddrPort()
	return n, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// writeTo is WriteToUDPAddrPort on any PacketConn.
func writeTo(c net.PacketConn, b []byte, to netip.AddrPort) (int, error) {
	if u, ok := c.(*net.UDPConn); ok {
		return u.WriteToUDPAddrPort(b, to)
	}
	return c.WriteTo(b, net.UDPAddrFromAddrPort(to))
}

// isTimeout tells a read deadline's error, whichever stack returned it.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
