package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"time"
)

// acceptTCP accepts connections on ln until it is closed, serving each on
// its own goroutine.
func (p *Proxy) acceptTCP(m Mapping, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off and retry.
			p.log.Warn("userland proxy: accept", append(m.attrs(), "err", err)...)
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !p.goTrack(c, func() { p.serveTCP(m, c) }) {
			c.Close()
		}
	}
}

// serveTCP relays one client connection to m's target: it dials the target
// on the proxy's Net, then copies both ways (this goroutine and one
// more) with half-close propagation, and closes both when both directions
// are done.
func (p *Proxy) serveTCP(m Mapping, client net.Conn) {
	defer p.forget(client)
	ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
	to := m.target(addrOf(client.RemoteAddr()))
	target, err := p.net.DialContext(ctx, "tcp", to.String())
	cancel()
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Info("userland proxy: dial target", append(m.attrs(), "client", client.RemoteAddr().String(), "err", err)...)
		}
		return
	}
	if !p.track(target) {
		target.Close()
		return
	}
	defer p.forget(target)

	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(target, client)
	}()
	pipe(client, target)
	<-done
}

// closeWriter is a TCP connection's half-close, as *net.TCPConn has it.
type closeWriter interface{ CloseWrite() error }

// pipe copies src to dst until src's EOF, then half-closes dst so that its
// peer sees the EOF too (a dst without CloseWrite is closed). On an error (a
// reset, or Close) it closes both connections so that the other direction
// stops as well.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		src.Close()
		dst.Close()
		return
	}
	if cw, ok := dst.(closeWriter); ok {
		cw.CloseWrite()
		return
	}
	dst.Close()
}

// addrOf is the IP address of a connection's address (invalid for other
// kinds of address).
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip
	}
	ip, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ip.Addr()
}
