package proxy

import (
	"errors"
	"io"
	"net"
	"time"
)

// acceptTCP accepts connections on ln until it is closed, serving each on
// its own goroutine.
func (p *Proxy) acceptTCP(m Mapping, ln *net.TCPListener) {
	for {
		c, err := ln.AcceptTCP()
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
// from inside the namespace, then copies both ways (this goroutine and one
// more) with half-close propagation, and closes both when both directions
// are done.
func (p *Proxy) serveTCP(m Mapping, client *net.TCPConn) {
	defer p.forget(client)
	var target *net.TCPConn
	err := p.inNetns(func() error {
		d := net.Dialer{Timeout: dialTimeout}
		c, err := d.DialContext(p.ctx, "tcp", m.Target.String())
		if err != nil {
			return err
		}
		target = c.(*net.TCPConn)
		return nil
	})
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

// pipe copies src to dst until src's EOF, then half-closes dst so that its
// peer sees the EOF too. On an error (a reset, or Close) it closes both
// connections so that the other direction stops as well.
func pipe(dst, src *net.TCPConn) {
	if _, err := io.Copy(dst, src); err != nil {
		src.Close()
		dst.Close()
		return
	}
	dst.CloseWrite()
}
