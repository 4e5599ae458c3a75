package proxy

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/nsthread"
)

// ipCmd runs ip(8) with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %v: %v: %s", args, err, out)
	}
	return nil
}

// testNetns creates a namespace of the test's own with lo up and deletes
// it when the test ends.
func testNetns(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	testenv.NeedRoot(t, "ip")
	name := fmt.Sprintf("uspx%d", os.Getpid()%1000)
	require.NoError(t, ipCmd("netns", "add", name), "create test namespace")
	t.Cleanup(func() {
		if err := ipCmd("netns", "del", name); err != nil {
			t.Errorf("delete test namespace: %v", err)
		}
	})
	require.NoError(t, ipCmd("-n", name, "link", "set", "lo", "up"))
	h, err := netns.GetFromName(name)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return name, h
}

func TestNamespace(t *testing.T) {
	name, ns := testNetns(t)

	// Targets inside the namespace, on its own 127.0.0.1.
	var tln net.Listener
	var upc *net.UDPConn
	require.NoError(t, nsthread.In(ns, func() error {
		var err error
		if tln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			return err
		}
		upc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		return err
	}))
	tcpTarget := serveTCP(t, tln, replyAfterEOF)
	udpTarget := serveUDPEcho(t, upc)

	port := freePort(t) // free in the root namespace, so the check below means something
	startProxy(t, name, []Mapping{
		{Proto: "tcp", HostPort: port, Target: tcpTarget, Endpoint: "t"},
		{Proto: "udp", HostPort: port, Target: udpTarget.addr, Endpoint: "u"},
	}, defaultOptions())

	// The root namespace has nothing on the port.
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	require.NoError(t, err, "the proxy must not listen in the root namespace")
	l.Close()
	u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
	require.NoError(t, err, "the proxy must not listen in the root namespace")
	u.Close()

	// From inside the namespace, 127.0.0.1:port is relayed.
	var c *net.TCPConn
	var uc *net.UDPConn
	require.NoError(t, nsthread.In(ns, func() error {
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
		tc, err := net.DialTimeout("tcp", dst.String(), 2*time.Second)
		if err != nil {
			return err
		}
		c = tc.(*net.TCPConn)
		uc, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	}))
	t.Cleanup(func() { c.Close(); uc.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write([]byte("inside"))
	require.NoError(t, err)
	require.NoError(t, c.CloseWrite())
	reply, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Equal(t, "got 6 bytes: inside", string(reply))

	got, err := udpRoundTrip(uc, []byte("dgram"), 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "dgram", string(got))

	// A namespace that does not exist is an error, not the root namespace.
	_, err = Start(t.Context(), name+"-missing", []Mapping{{Proto: "tcp", HostPort: port, Target: tcpTarget}}, nil)
	require.ErrorContains(t, err, fmt.Sprintf("open netns %q", name+"-missing"))
}

func TestNamespacePortInUse(t *testing.T) {
	name, ns := testNetns(t)
	var busy net.Listener
	require.NoError(t, nsthread.In(ns, func() error {
		var err error
		busy, err = net.Listen("tcp", ":0")
		return err
	}))
	defer busy.Close()
	port := uint16(busy.Addr().(*net.TCPAddr).Port)
	_, err := Start(t.Context(), name, []Mapping{{Proto: "tcp", HostPort: port, Target: netip.MustParseAddrPort("127.0.0.1:1")}}, nil)
	require.EqualError(t, err, fmt.Sprintf("publish %d/tcp: listen 0.0.0.0:%d in netns %q: address already in use", port, port, name))
}
