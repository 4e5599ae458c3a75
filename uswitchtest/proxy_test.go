package uswitchtest_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uswitch-dev/uswitch/uswitchtest"
)

// labUDP is lab with web also publishing 5353:53/udp.
var labUDP = strings.Replace(lab, `publish = ["8080:80/tcp"]`, `publish = ["8080:80/tcp", "5353:53/udp"]`, 1)

// TestUserlandProxyTCP: with userland_proxy (the default), the host side
// reaches web's published port at its own 127.0.0.1:8080 and
// host_address:8080 through the proxy, which connects from host_address
// as `uswitch run`'s does; the DNAT path at the uplink address is
// unchanged; an endpoint reaches the proxy at host_address:8080 too; data
// goes both ways and the server's EOF comes back after the client's
// half-close.
func TestUserlandProxyTCP(t *testing.T) {
	n := uswitchtest.New(t, lab)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	echo(t, l)
	host := n.Host().Stack()

	for _, addr := range []string{"127.0.0.1:8080", "10.250.0.1:8080", "10.250.0.2:8080"} {
		from := dialLine(t, host, addr)
		require.True(t, strings.HasPrefix(from, "10.250.0.1:"), "%s: web saw %s", addr, from)
	}
	from := dialLine(t, n.Endpoint("client").Stack(), "10.250.0.1:8080")
	require.True(t, strings.HasPrefix(from, "10.250.0.1:"), "client via the proxy: web saw %s", from)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := host.DialContext(ctx, "tcp", "127.0.0.1:8080")
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, "127.0.0.1:8080", c.RemoteAddr().String())
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, "ping")
	require.NoError(t, err)
	require.NoError(t, c.(interface{ CloseWrite() error }).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err, "the echo's EOF comes back through the proxy")
	require.Regexp(t, `^10\.250\.0\.1:\d+\nping$`, string(got))
}

// TestUserlandProxyUDP: a UDP datagram to 127.0.0.1:5353 on the host side
// reaches web's port 53 from host_address, and the answer comes back.
func TestUserlandProxyUDP(t *testing.T) {
	n := uswitchtest.New(t, labUDP)
	pc, err := n.Endpoint("web").Stack().ListenPacket("udp", ":53")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // answer each datagram with its source and payload
		defer wg.Done()
		b := make([]byte, 512)
		for {
			k, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()+" "+string(b[:k])), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })

	for _, addr := range []string{"127.0.0.1:5353", "10.250.0.1:5353"} {
		c, err := n.Host().Stack().DialContext(context.Background(), "udp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write([]byte("ping"))
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 512)
		k, err := c.Read(b)
		require.NoError(t, err, addr)
		require.Regexp(t, `^10\.250\.0\.1:\d+ ping$`, string(b[:k]), addr)
	}
}

// TestNoUserlandProxy: with userland_proxy = false nothing listens on the
// host side's 127.0.0.1:8080 or host_address:8080 (refused), and the
// published port still answers at the uplink address.
func TestNoUserlandProxy(t *testing.T) {
	n := uswitchtest.New(t, strings.Replace(lab, "[uplink]\n", "[uplink]\nuserland_proxy = false\n", 1))
	require.False(t, n.Plan().Uplink.UserlandProxy)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	echo(t, l)
	host := n.Host().Stack()

	for _, addr := range []string{"127.0.0.1:8080", "10.250.0.1:8080"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := host.DialContext(ctx, "tcp", addr)
		cancel()
		if c != nil {
			c.Close()
		}
		require.ErrorContains(t, err, "refused", addr)
	}
	require.True(t, strings.HasPrefix(dialLine(t, host, "10.250.0.2:8080"), "10.250.0.1:"))
}

// TestUserlandProxyCloseMidConnection: Close while a connection through
// the proxy is open ends every goroutine of the proxy and the stacks.
func TestUserlandProxyCloseMidConnection(t *testing.T) {
	before := goleak.IgnoreCurrent()
	n, err := uswitchtest.Start(lab)
	require.NoError(t, err)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := n.Host().Stack().DialContext(ctx, "tcp", "127.0.0.1:8080")
	require.NoError(t, err)
	server, ok := <-accepted
	require.True(t, ok, "web accepted the proxied connection")

	n.Close()
	c.Close()
	server.Close()
	goleak.VerifyNone(t, before)
}
