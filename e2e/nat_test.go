package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/rule"
)

// natConfig: front (masqueraded) with f, which publishes 80/tcp as 8080 and
// 53/udp as 5353, and f2; back (isolated) with b; an uplink whose host side
// is a namespace uswitch makes; a reject rule for TCP port 9999.
func natConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.252.0.2/30"
host_address = "10.252.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.83.0.0/24"

[[network]]
name = "back"
subnet = "10.84.0.0/24"

[[endpoint]]
name = "%[1]s-f"
network = "front"
publish = ["8080:80/tcp", "5353:53/udp"]

[[endpoint]]
name = "%[1]s-f2"
network = "front"
link = "veth"

[[endpoint]]
name = "%[1]s-b"
network = "back"

[[rule]]
hook = "forward"
proto = "tcp"
dport = "9999"
action = "reject"
`, name)
}

// serveTCP accepts connections in ns on addr and answers each with the
// client's address as the server sees it.
func serveTCP(t *testing.T, ns, addr string) {
	l := listen(t, ns, addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String()))
			c.Close()
		}
	}()
}

// clientAddr dials addr from ns and returns what the server saw as the
// client's address.
func clientAddr(t *testing.T, ns, addr string) string {
	t.Helper()
	c := dial(t, ns, addr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	require.NoError(t, err)
	host, _, err := net.SplitHostPort(string(b))
	require.NoError(t, err, "answer %q", b)
	return host
}

// serveUDP answers every datagram in ns on addr with the sender's address.
func serveUDP(t *testing.T, ns, addr string) {
	var pc net.PacketConn
	var err error
	inNetns(t, ns, func() { pc, err = net.ListenPacket(family("udp", addr), addr) })
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// udpExchange sends one datagram from ns to addr and returns the answer.
func udpExchange(t *testing.T, ns, addr string) (string, error) {
	t.Helper()
	var c net.Conn
	var err error
	inNetns(t, ns, func() { c, err = net.Dial(family("udp", addr), addr) })
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(string(buf[:n]))
	return host, nil
}

func TestNAT(t *testing.T) {
	needRoot(t)
	name := prefix("nat")
	in := start(t, name, writeConfig(t, natConfig(name)))
	f, f2, b, host := name+"-f", name+"-f2", name+"-b", name+"-host"
	const uplink = "10.252.0.2"
	// Servers live as long as the whole test (subtests' cleanups would
	// close them early).
	serveTCP(t, host, "10.252.0.1:9000")
	serveUDP(t, host, "10.252.0.1:9001")
	serveTCP(t, f, "0.0.0.0:80")
	serveUDP(t, f, "0.0.0.0:53")
	serveTCP(t, host, "10.252.0.1:9999") // someone listens: a refusal is the rule's

	t.Run("masquerade: the host sees the uplink address", func(t *testing.T) {
		require.Equal(t, uplink, clientAddr(t, f, "10.252.0.1:9000"))
		require.Equal(t, uplink, clientAddr(t, b, "10.252.0.1:9000"))
		got, err := udpExchange(t, f2, "10.252.0.1:9001")
		require.NoError(t, err)
		require.Equal(t, uplink, got)
		ping(t, f, "10.252.0.1")
	})
	t.Run("published TCP and UDP ports from the host side", func(t *testing.T) {
		require.Equal(t, "10.252.0.1", clientAddr(t, host, uplink+":8080"), "DNAT without SNAT")
		got, err := udpExchange(t, host, uplink+":5353")
		require.NoError(t, err)
		require.Equal(t, "10.252.0.1", got)
	})
	t.Run("hairpin from the same network", func(t *testing.T) {
		require.Equal(t, "10.83.0.1", clientAddr(t, f2, uplink+":8080"), "the server sees the gateway")
	})
	t.Run("published port from an isolated network", func(t *testing.T) {
		require.Equal(t, "10.84.0.2", clientAddr(t, b, uplink+":8080"))
		noPing(t, b, "10.83.0.2") // still isolated otherwise
	})
	t.Run("userland proxy on the host side's loopback", func(t *testing.T) {
		got := clientAddr(t, host, "127.0.0.1:8080")
		require.Equal(t, "10.252.0.1", got, "docker-proxy dials from the host side")
	})
	t.Run("UDP to a closed port comes back as a translated port unreachable", func(t *testing.T) {
		_, err := udpExchange(t, f, "10.252.0.1:9555")
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "want connection refused, got %v", err)
	})
	t.Run("a reject rule answers RST", func(t *testing.T) {
		var err error
		start := time.Now()
		inNetns(t, f, func() { _, err = net.DialTimeout("tcp4", "10.252.0.1:9999", 3*time.Second) })
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "want connection refused, got %v", err)
		require.Less(t, time.Since(start), time.Second)
	})
	t.Run("TCP to a closed port of the uplink address is reset", func(t *testing.T) {
		closedPortRefused(t, host, uplink+":7999")
		closedPortRefused(t, f, uplink+":7999")
	})
	t.Run("conntrack shows the flows", func(t *testing.T) {
		out, err := in.cli("conntrack", "-o", "json")
		require.NoError(t, err)
		require.Contains(t, out, `"10.252.0.1"`)
		require.Contains(t, out, `"snat": true`)
		require.Contains(t, out, `"dnat": true`)
		out, err = in.cli("rules")
		require.NoError(t, err)
		require.Contains(t, out, "isolation")
		require.Contains(t, out, "DNAT")
		out, err = in.cli("rules", "-o", "json")
		require.NoError(t, err)
		var rows []rule.Listed
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		var dnat uint64
		for _, r := range rows {
			if r.Action == rule.DNAT && r.Hook == rule.Prerouting && r.ToAddr.IsValid() {
				dnat += r.Packets
			}
		}
		require.NotZero(t, dnat, "the published port's DNAT rule counted the connections to it")
	})
}

// closedPortRefused connects to addr, a closed TCP port of the router's,
// from ns ten times in a row: each is refused (ECONNREFUSED), and all ten
// in well under the seconds it would take were the answer an ICMP error,
// which the router rate limits (6 at once to a destination, then one a
// second: from the seventh on, a connect would wait out a SYN
// retransmission). Linux resets a closed port for both families.
func closedPortRefused(t *testing.T, ns, addr string) {
	t.Helper()
	start := time.Now()
	for i := range 10 {
		var err error
		inNetns(t, ns, func() {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, 5*time.Second); c != nil {
				c.Close()
			}
		})
		require.True(t, errors.Is(err, syscall.ECONNREFUSED), "connect %d from %s to %s: want connection refused, got %v", i+1, ns, addr, err)
	}
	require.Less(t, time.Since(start), 2*time.Second, "refused by a reset each time, not a rate-limited ICMP error")
}
