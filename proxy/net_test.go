package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordNet is a Net over the kernel's loopback that records what the
// proxy asked of it; Listen fails for addresses in refuse.
type recordNet struct {
	refuse string

	mu     sync.Mutex
	asked  []string
	opened []net.Listener
}

func (n *recordNet) note(s string) {
	n.mu.Lock()
	n.asked = append(n.asked, s)
	n.mu.Unlock()
}

// loopback listens on 127.0.0.1 where the proxy asks for 0.0.0.0.
func loopback(addr string) string { return strings.Replace(addr, "0.0.0.0", "127.0.0.1", 1) }

func (n *recordNet) Listen(network, addr string) (net.Listener, error) {
	n.note("listen " + network + " " + addr)
	if addr == n.refuse {
		return nil, errors.New("no such port here")
	}
	l, err := net.Listen(network, loopback(addr))
	if err == nil {
		n.mu.Lock()
		n.opened = append(n.opened, l)
		n.mu.Unlock()
	}
	return l, err
}

func (n *recordNet) ListenPacket(network, addr string) (net.PacketConn, error) {
	n.note("listen " + network + " " + addr)
	return net.ListenPacket(network, loopback(addr))
}

func (n *recordNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	n.note("dial " + network + " " + addr)
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestStartOnUsesTheGivenNet: StartOn listens and dials only through its
// Net, and relays TCP (with half-close) and UDP as Start does.
func TestStartOnUsesTheGivenNet(t *testing.T) {
	echoAddr := serveTCP(t, listenTCP(t), echo)
	udp := serveUDPEcho(t, listenUDP(t))
	tport, uport := freePort(t), freePort(t)
	rn := &recordNet{}
	p, err := StartOn(t.Context(), rn, []Mapping{
		{Proto: ProtoTCP, HostPort: tport, Target: echoAddr, Endpoint: "echo"},
		{Proto: ProtoUDP, HostPort: uport, Target: udp.addr, Endpoint: "udp"},
	}, testLog(t))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	c := dialTCP(t, tport)
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err, "the echo's half-close comes back as EOF")
	require.Equal(t, "hello", string(got))

	reply, err := udpRoundTrip(dialUDP(t, uport), []byte("ping"), defaultUDPIdle)
	require.NoError(t, err)
	require.Equal(t, "ping", string(reply))

	p.Close()
	rn.mu.Lock()
	defer rn.mu.Unlock()
	require.Equal(t, []string{
		fmt.Sprintf("listen tcp 0.0.0.0:%d", tport),
		fmt.Sprintf("listen udp 0.0.0.0:%d", uport),
		"dial tcp " + echoAddr.String(),
		"dial udp " + udp.addr.String(),
	}, rn.asked)
}

// TestStartOnListenError: a Net that cannot listen fails StartOn with the
// mapping named, and what was opened before is closed.
func TestStartOnListenError(t *testing.T) {
	a, b := freePort(t), freePort(t)
	rn := &recordNet{refuse: fmt.Sprintf("0.0.0.0:%d", b)}
	_, err := StartOn(t.Context(), rn, []Mapping{
		{Proto: ProtoTCP, HostPort: a, Target: netip.MustParseAddrPort("127.0.0.1:1"), Endpoint: "a"},
		{Proto: ProtoTCP, HostPort: b, Target: netip.MustParseAddrPort("127.0.0.1:1"), Endpoint: "b"},
	}, nil)
	require.ErrorContains(t, err, fmt.Sprintf("publish %d/tcp: listen 0.0.0.0:%d in the given stack: no such port here", b, b))
	require.Len(t, rn.opened, 1)
	_, err = rn.opened[0].Accept()
	require.ErrorIs(t, err, net.ErrClosed, "the first listener was closed")
}
