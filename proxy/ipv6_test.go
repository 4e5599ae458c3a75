package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

// Mappings carry the endpoint's IPv6 address, where it has one.
func TestMappingsIPv6(t *testing.T) {
	plan := &config.Plan{Endpoints: []config.Endpoint{{
		Name: "web", Mode: config.ModeBridge,
		Interfaces: []config.Interface{{IP: netip.MustParseAddr("172.20.0.10"), IP6: netip.MustParseAddr("fd00:20::10")}},
		Publish:    []config.Publish{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
	}}}
	require.Equal(t, []Mapping{{Proto: "tcp", HostPort: 8080, Target: netip.MustParseAddrPort("172.20.0.10:80"),
		Target6: netip.MustParseAddrPort("[fd00:20::10]:80"), Endpoint: "web"}}, Mappings(plan))
}

// hello serves ln, answering every connection with who before closing.
func hello(t *testing.T, network, addr, who string) netip.AddrPort {
	ln, err := net.Listen(network, addr)
	require.NoError(t, err)
	return serveTCP(t, ln, func(c *net.TCPConn) { fmt.Fprint(c, who) })
}

// The proxy listens on both families (as docker-proxy on 0.0.0.0 and
// [::]): a client of [::1]:HOSTPORT reaches the endpoint's IPv6 address,
// one of 127.0.0.1:HOSTPORT its IPv4 address; without an IPv6 address the
// IPv6 client goes to the IPv4 one. UDP picks alike.
func TestProxyIPv6Clients(t *testing.T) {
	v4, v6 := hello(t, "tcp4", "127.0.0.1:0", "v4"), hello(t, "tcp6", "[::1]:0", "v6")
	u4 := serveUDPEcho(t, listenUDP(t))
	pc6, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:0")))
	require.NoError(t, err)
	u6 := serveUDPEcho(t, pc6)
	both, only4, udp := freePort(t), freePort(t), freePort(t)
	startProxy(t, "", []Mapping{
		{Proto: "tcp", HostPort: both, Target: v4, Target6: v6, Endpoint: "both"},
		{Proto: "tcp", HostPort: only4, Target: v4, Endpoint: "only4"},
		{Proto: "udp", HostPort: udp, Target: u4.addr, Target6: u6.addr, Endpoint: "udp"},
	}, defaultOptions())
	get := func(host string, port uint16) string {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), 2*time.Second)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		b, err := io.ReadAll(c)
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "v6", get("::1", both))
	require.Equal(t, "v4", get("127.0.0.1", both))
	require.Equal(t, "v4", get("::1", only4), "no IPv6 address: to the IPv4 one")

	c, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.IPv6Loopback(), udp)))
	require.NoError(t, err)
	defer c.Close()
	got, err := udpRoundTrip(c, []byte("six"), 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "six", string(got))
	require.Equal(t, 1, u6.numPeers())
	require.Zero(t, u4.numPeers())
}
