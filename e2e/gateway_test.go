package e2e

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// gatewayConfig: front (masquerade, dns) with a server endpoint publishing
// 8080:80/tcp and a client; back without masquerade or DNS; an uplink whose
// host side is a namespace of the test's own.
func gatewayConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.0.2/30"
host_address = "10.253.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.92.0.0/24"

[[network]]
name = "back"
subnet = "10.93.0.0/24"
masquerade = false
dns = false

[[endpoint]]
name = "%[1]s-srv"
network = "front"
ip = "10.92.0.10"
publish = ["8080:80/tcp"]

[[endpoint]]
name = "%[1]s-cli"
network = "front"
ip = "10.92.0.11"

[[endpoint]]
name = "%[1]s-b"
network = "back"
ip = "10.93.0.10"
`, name)
}

// whoServer answers each line it reads on l's connections with the
// connection's remote address and the line.
func whoServer(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s %s", host, line)
			}()
		}
	}()
}

// exchange sends a line on a new connection from ns to addr and returns
// the answer.
func exchange(t *testing.T, ns, addr string) string {
	t.Helper()
	c := dial(t, ns, addr)
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err := fmt.Fprintf(c, "hello\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "answer from %s in %s", addr, ns)
	return line
}

func TestGatewayIsTheHost(t *testing.T) {
	needRoot(t)
	name := prefix("gwh")
	start(t, name, writeConfig(t, gatewayConfig(name)))
	srv, cli, b, hostNS := name+"-srv", name+"-cli", name+"-b", name+"-host"

	// A service on the host side, on its own address only.
	whoServer(listen(t, hostNS, "10.253.0.1:7000"))
	t.Run("a host port at the gateway, from a masquerading network", func(t *testing.T) {
		require.Equal(t, "10.253.0.2 hello\n", exchange(t, cli, "10.92.0.1:7000"), "the host sees the uplink address")
	})
	t.Run("a host port at the gateway, from a network without masquerade", func(t *testing.T) {
		require.Equal(t, "10.253.0.2 hello\n", exchange(t, b, "10.93.0.1:7000"))
	})
	t.Run("UDP too", func(t *testing.T) {
		var pc net.PacketConn
		var err error
		inNetns(t, hostNS, func() { pc, err = net.ListenPacket("udp4", "10.253.0.1:7001") })
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(append([]byte(from.(*net.UDPAddr).IP.String()+" "), buf[:n]...), from)
			}
		}()
		var c net.Conn
		inNetns(t, cli, func() { c, err = net.Dial("udp4", "10.92.0.1:7001") })
		require.NoError(t, err)
		defer c.Close()
		buf := make([]byte, 1500)
		for try := 0; ; try++ {
			_, err = c.Write([]byte("dgram"))
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Second)))
			n, err := c.Read(buf)
			if err == nil {
				require.Equal(t, "10.253.0.2 dgram", string(buf[:n]))
				return
			}
			require.Less(t, try, 5, "no answer through the gateway: %v", err)
		}
	})
	t.Run("a published port at the gateway", func(t *testing.T) {
		whoServer(listen(t, srv, ":80"))
		// From the same network: hairpin, the server sees the gateway.
		require.Equal(t, "10.92.0.1 hello\n", exchange(t, cli, "10.92.0.1:8080"))
		require.Equal(t, "10.92.0.1 hello\n", exchange(t, srv, "10.92.0.1:8080"), "its own published port")
		// From another network, at its own gateway.
		require.Equal(t, "10.93.0.10 hello\n", exchange(t, b, "10.93.0.1:8080"))
	})
	t.Run("host.uswitch.internal", func(t *testing.T) {
		resolves(t, cli, "host.uswitch.internal", "10.92.0.1")
	})
	t.Run("closed host ports are refused, not silent", func(t *testing.T) {
		var err error
		inNetns(t, cli, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp4", "10.92.0.1:7999", 5*time.Second)
			if c != nil {
				c.Close()
			}
		})
		require.ErrorContains(t, err, "connection refused")
	})
}
