package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fragConfig: front (masqueraded) with f, which publishes 53/udp as 5353;
// an uplink whose host side is a namespace uswitch makes.
func fragConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.254.95.2/30"
host_address = "10.254.95.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.95.0.0/24"

[[endpoint]]
name = "%[1]s-f"
network = "front"
publish = ["5353:53/udp"]
`, name)
}

// udpSocket opens a UDP socket bound to addr inside a namespace.
func udpSocket(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	return udpSocketOf(t, "udp4", ns, addr)
}

// udpSocketOf opens a socket of network ("udp4", "udp6") bound to addr
// inside a namespace.
func udpSocketOf(t *testing.T, network, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	var err error
	inNetns(t, ns, func() {
		var a *net.UDPAddr
		if a, err = net.ResolveUDPAddr(network, addr); err == nil {
			c, err = net.ListenUDP(network, a)
		}
	})
	require.NoError(t, err)
	require.NoError(t, c.SetReadBuffer(4<<20))
	t.Cleanup(func() { c.Close() })
	return c
}

// bigRoundTrips sends datagrams of 6000 and 60000 bytes (fragmented on
// the way) from cli to to: srv must get each intact from src (any port
// when src's port is 0), and its answer, as large, must reach cli intact
// from to. seed tells the patterns of one exchange from another's.
func bigRoundTrips(t *testing.T, cli, srv *net.UDPConn, to, src netip.AddrPort, seed byte) {
	t.Helper()
	for i, n := range []int{6000, 60000} {
		msg := pattern(n, seed+byte(i))
		_, err := cli.WriteToUDPAddrPort(msg, to)
		require.NoError(t, err)
		got, from := readFrom(t, srv)
		require.True(t, bytes.Equal(msg, got), "%d bytes arrive intact", n)
		if src.Port() == 0 {
			require.Equal(t, src.Addr(), from.Addr(), "the server sees the source")
		} else {
			require.Equal(t, src, from, "the server sees the source")
		}

		reply := pattern(n, seed+byte(i)+100)
		_, err = srv.WriteToUDPAddrPort(reply, from)
		require.NoError(t, err)
		got, from = readFrom(t, cli)
		require.True(t, bytes.Equal(reply, got), "%d bytes of reply arrive intact", n)
		require.Equal(t, to, from, "the answer comes from the address the client sent to")
	}
}

// sniffIPv4 opens an AF_PACKET socket in a namespace that receives every
// IPv4 packet of every interface there (without its Ethernet header).
func sniffIPv4(t *testing.T, ns string) int {
	t.Helper()
	return sniffEtherType(t, ns, 0x0800)
}

// sniffEtherType is sniffIPv4 for packets of any EtherType (0x86dd: IPv6).
func sniffEtherType(t *testing.T, ns string, etherType uint16) int {
	t.Helper()
	var fd int
	var err error
	inNetns(t, ns, func() {
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(etherType)))
	})
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 16<<20))
	return fd
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// drainIPv4 reads what a packet socket holds without waiting and returns
// the IPv4 packets (headers at least).
func drainIPv4(t *testing.T, fd int) [][]byte {
	t.Helper()
	return drainPackets(t, fd, 20)
}

// drainPackets reads what a packet socket holds without waiting and
// returns the packets of at least min bytes.
func drainPackets(t *testing.T, fd, min int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 70000)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, syscall.MSG_DONTWAIT)
		if errors.Is(err, syscall.EAGAIN) {
			return out
		}
		require.NoError(t, err)
		if n >= min {
			out = append(out, append([]byte(nil), buf[:n]...))
		}
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

// readFrom reads one datagram within 5 s.
func readFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 70000)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	require.NoError(t, err, "a whole datagram arrives")
	return buf[:n], from
}

// Large UDP datagrams, which the sender's kernel fragments, go through
// masquerade and to a published port whole: uswitch reassembles them
// before conntrack, translates them as a whole and fragments them again.
// A packet socket on the host side sees every fragment with the uplink's
// address, none with the endpoint's.
func TestFragmentedUDPThroughNAT(t *testing.T) {
	needRoot(t)
	name := prefix("frag")
	in := start(t, name, writeConfig(t, fragConfig(name)))
	host, ep := name+"-host", name+"-f"
	front := netip.MustParsePrefix("10.95.0.0/24")
	uplink := netip.MustParseAddr("10.254.95.2")
	hostAddr := netip.MustParseAddr("10.254.95.1")
	sniff := sniffIPv4(t, host)

	t.Run("masquerade", func(t *testing.T) {
		srv := udpSocket(t, host, "10.254.95.1:9000")
		cli := udpSocket(t, ep, "0.0.0.0:40000")
		bigRoundTrips(t, cli, srv, netip.AddrPortFrom(hostAddr, 9000), netip.AddrPortFrom(uplink, 0), 0) // masqueraded
	})

	t.Run("published port", func(t *testing.T) {
		srv := udpSocket(t, ep, "0.0.0.0:53")
		cli := udpSocket(t, host, "10.254.95.1:41000")
		bigRoundTrips(t, cli, srv, netip.AddrPortFrom(uplink, 5353), netip.AddrPortFrom(hostAddr, 41000), 7) // DNAT keeps the client's address
	})

	// What the host side saw: fragments, all with public addresses.
	pkts := drainIPv4(t, sniff)
	frags := map[netip.Addr]int{}
	for _, p := range pkts {
		src := netip.AddrFrom4([4]byte(p[12:16]))
		require.False(t, front.Contains(src), "a packet left the uplink with the private source %v", src)
		if p[6]&0x20 != 0 || p[6]&0x1f != 0 || p[7] != 0 {
			frags[src]++
		}
	}
	t.Logf("fragments seen on the host side, by source: %v", frags)
	// from uswitch: two datagrams masqueraded, two answers from the
	// published port, 5 fragments for 6000 bytes, 41 for 60000
	require.GreaterOrEqual(t, frags[uplink], 2*(5+41), "the host side saw uswitch's fragments")

	ports := in.ports(t)
	for _, p := range ports {
		for reason := range p.Drops {
			require.NotContains(t, reason, "frag", "port %s dropped fragments", p.Name)
		}
	}
}
