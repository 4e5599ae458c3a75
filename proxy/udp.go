package proxy

import (
	"errors"
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
	ln      *net.UDPConn
	dropped atomic.Uint64 // datagrams of new clients dropped because flows was full

	mu    sync.Mutex
	flows map[netip.AddrPort]*udpFlow // by client address
}

// udpFlow is one client's flow.
type udpFlow struct {
	client netip.AddrPort
	conn   *net.UDPConn // connected to the target, created in the namespace
	last   atomic.Int64 // UnixNano of the last datagram either way
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

// serve reads client datagrams until the listening socket is closed and
// forwards each on its client's flow.
func (r *udpRelay) serve() {
	buf := make([]byte, maxDatagram)
	for {
		n, client, err := r.ln.ReadFromUDPAddrPort(buf)
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
	var conn *net.UDPConn
	err := r.p.inNetns(func() error {
		var err error
		conn, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.m.Target))
		return err
	})
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
		case errors.Is(err, os.ErrDeadlineExceeded):
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
		if _, err := r.ln.WriteToUDPAddrPort(buf[:n], f.client); err != nil {
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
