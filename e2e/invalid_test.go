package e2e

import (
	be "encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// ctConfig: front (masqueraded) with f, which publishes 53/udp as 5353,
// and f2; an uplink whose host side is a namespace uswitch makes.
func ctConfig(name, net3 string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.254.%[2]s.2/30"
host_address = "10.254.%[2]s.1/30"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.%[2]s.0.0/24"

[[endpoint]]
name = "%[1]s-f"
network = "front"
publish = ["5353:53/udp"]

[[endpoint]]
name = "%[1]s-f2"
network = "front"
`, name, net3)
}

// rawSender opens a raw IPv4 socket in a namespace that sends packets
// whose headers the caller writes.
func rawSender(t *testing.T, ns string) int {
	t.Helper()
	var fd int
	var err error
	inNetns(t, ns, func() { fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW) })
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

// Packets conntrack finds invalid (truncated TCP and UDP, ICMP errors
// about no connection, TCP that cannot open one) are dropped at the
// forward hook and counted as ct-invalid: none leaves the uplink with the
// endpoint's private source, while valid traffic is masqueraded.
func TestInvalidPacketsDropped(t *testing.T) {
	needRoot(t)
	name := prefix("inv")
	in := start(t, name, writeConfig(t, ctConfig(name, "97")))
	host, ep := name+"-host", name+"-f"
	front := netip.MustParsePrefix("10.97.0.0/24")
	src := netip.MustParseAddr("10.97.0.2").As4()
	dst := netip.MustParseAddr("10.254.97.1").As4()
	sniff := sniffIPv4(t, host)
	fd := rawSender(t, ep)

	send := func(proto uint8, l4 []byte) {
		b := make([]byte, 20+len(l4))
		packet.IPv4(b).Encode(&packet.IPv4Fields{TotalLen: uint16(len(b)), ID: 777, TTL: 64, Protocol: proto, Src: src, Dst: dst})
		copy(b[20:], l4)
		require.NoError(t, syscall.Sendto(fd, b, 0, &syscall.SockaddrInet4{Addr: dst}))
	}
	// a UDP "header" of 3 bytes, a TCP one of 10
	send(packet.ProtoUDP, []byte{0x9c, 0x40, 0x00})
	send(packet.ProtoTCP, []byte{0x9c, 0x41, 0x00, 0x50, 0, 0, 0, 1, 0, 0})
	// a TCP FIN+ACK out of the blue
	fin := make([]byte, 20)
	be.BigEndian.PutUint16(fin[0:2], 40002)
	be.BigEndian.PutUint16(fin[2:4], 80)
	fin[12], fin[13] = 5<<4, packet.TCPFin|packet.TCPAck
	be.BigEndian.PutUint16(fin[16:18], packet.Checksum(fin, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, 20)))
	send(packet.ProtoTCP, fin)
	// port unreachable about a UDP datagram nobody sent
	quoted := make([]byte, 28)
	packet.IPv4(quoted).Encode(&packet.IPv4Fields{TotalLen: 28, ID: 1, TTL: 64, Protocol: packet.ProtoUDP, Src: dst, Dst: src})
	be.BigEndian.PutUint16(quoted[20:22], 53)
	be.BigEndian.PutUint16(quoted[22:24], 40003)
	icmp := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, quoted...)
	be.BigEndian.PutUint16(icmp[2:4], packet.Checksum(icmp, 0))
	send(packet.ProtoICMP, icmp)

	// a valid datagram after them, to know when they have all passed
	srv := udpSocket(t, host, "10.254.97.1:9000")
	cli := udpSocket(t, ep, "0.0.0.0:40009")
	_, err := cli.WriteToUDPAddrPort([]byte("valid"), netip.MustParseAddrPort("10.254.97.1:9000"))
	require.NoError(t, err)
	_, from := readFrom(t, srv)
	require.Equal(t, netip.MustParseAddr("10.254.97.2"), from.Addr())
	time.Sleep(100 * time.Millisecond) // anything still in flight on the host side

	for _, p := range drainIPv4(t, sniff) {
		s := netip.AddrFrom4([4]byte(p[12:16]))
		require.False(t, front.Contains(s), "a packet (protocol %d) left the uplink with the private source %v", p[9], s)
	}
	var drops uint64
	for _, p := range in.ports(t) {
		drops += p.Drops["ct-invalid"]
	}
	require.EqualValues(t, 4, drops, "each invalid packet counted")
}

// recvTTL reads one datagram on c and the TTL it arrived with.
func recvTTL(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort, int) {
	t.Helper()
	buf, oob := make([]byte, 2000), make([]byte, 128)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, oobn, _, from, err := c.ReadMsgUDPAddrPort(buf, oob)
	require.NoError(t, err)
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	require.NoError(t, err)
	for _, m := range msgs {
		if m.Header.Level == syscall.IPPROTO_IP && m.Header.Type == syscall.IP_TTL && len(m.Data) >= 4 {
			return buf[:n], from, int(m.Data[0])
		}
	}
	t.Fatal("no TTL with the datagram")
	return nil, from, 0
}

func withRecvTTL(t *testing.T, c *net.UDPConn) *net.UDPConn {
	t.Helper()
	rc, err := c.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_RECVTTL, 1) }))
	require.NoError(t, serr)
	return c
}

// A same-network hairpin (f2 to the published port, DNATed to f on the
// same network) keeps its TTL both ways, as the kernel's bridge with
// br_netfilter does: 64 at each end; routed traffic arrives with 63.
func TestHairpinTTL(t *testing.T) {
	needRoot(t)
	name := prefix("hpt")
	start(t, name, writeConfig(t, ctConfig(name, "98")))
	host, f, f2 := name+"-host", name+"-f", name+"-f2"
	srv := withRecvTTL(t, udpSocket(t, f, "0.0.0.0:53"))
	cli := withRecvTTL(t, udpSocket(t, f2, "0.0.0.0:41000"))
	_, err := cli.WriteToUDPAddrPort([]byte("question"), netip.MustParseAddrPort("10.254.98.2:5353"))
	require.NoError(t, err)
	_, from, ttl := recvTTL(t, srv)
	require.Equal(t, netip.MustParseAddr("10.98.0.1"), from.Addr(), "hairpin masquerade: the server sees the gateway")
	require.Equal(t, 64, ttl, "the request keeps its TTL")
	_, err = srv.WriteToUDPAddrPort([]byte("answer"), from)
	require.NoError(t, err)
	_, from, ttl = recvTTL(t, cli)
	require.Equal(t, netip.MustParseAddrPort("10.254.98.2:5353"), from)
	require.Equal(t, 64, ttl, "the answer arrives with TTL 64, as with the kernel")

	// routed: one hop less
	hs := withRecvTTL(t, udpSocket(t, host, "10.254.98.1:9000"))
	_, err = cli.WriteToUDPAddrPort([]byte("out"), netip.MustParseAddrPort("10.254.98.1:9000"))
	require.NoError(t, err)
	_, _, ttl = recvTTL(t, hs)
	require.Equal(t, 63, ttl)
}
