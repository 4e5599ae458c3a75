package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/rule"
)

// nat6Config: two isolated dual-stack networks, front (a ULA subnet6:
// masquerade6 by default) with f, which publishes 80/tcp as 8080 and
// 53/udp as 5353, and f2; back with b; an uplink with address6 whose host
// side is a namespace of the test's own, with the userland proxy.
func nat6Config(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.0.2/30"
host_address = "10.253.0.1/30"
address6 = "fd00:fb::2/64"
host_address6 = "fd00:fb::1/64"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.87.0.0/24"
subnet6 = "fd00:b0::/64"

[[network]]
name = "back"
subnet = "10.88.0.0/24"
subnet6 = "fd00:b1::/64"

[[endpoint]]
name = "%[1]s-f"
network = "front"
ip6 = "fd00:b0::10"
publish = ["8080:80/tcp", "5353:53/udp"]

[[endpoint]]
name = "%[1]s-f2"
network = "front"
link = "veth"
ip6 = "fd00:b0::11"

[[endpoint]]
name = "%[1]s-b"
network = "back"
ip6 = "fd00:b1::20"
`, name)
}

// TestIPv6NAT: NAT66 and Docker's IPv6 policy on real TAPs and veths:
// masquerade to address6, published ports on the uplink's address6 (DNAT)
// and through the userland proxy on [::1], hairpin, isolation, and the
// conntrack and rules views of it all.
func TestIPv6NAT(t *testing.T) {
	needRoot(t)
	name := prefix("n6")
	in := start(t, name, writeConfig(t, nat6Config(name)))
	f, f2, b, host := name+"-f", name+"-f2", name+"-b", name+"-host"
	const uplink6, host6, f6, front6GW = "fd00:fb::2", "fd00:fb::1", "fd00:b0::10", "fd00:b0::1"
	// Servers live as long as the whole test.
	serveTCP(t, host, "["+host6+"]:9000")
	serveUDP(t, host, "["+host6+"]:9001")
	serveTCP(t, f, "[::]:80")
	serveTCP(t, f, "0.0.0.0:80") // for the proxy's IPv4 clients
	serveUDP(t, f, "[::]:53")

	t.Run("masquerade6: the host side sees address6", func(t *testing.T) {
		require.Equal(t, uplink6, clientAddr(t, f, "["+host6+"]:9000"))
		require.Equal(t, uplink6, clientAddr(t, b, "["+host6+"]:9000"))
		got, err := udpExchange(t, f2, "["+host6+"]:9001")
		require.NoError(t, err)
		require.Equal(t, uplink6, got)
		require.Equal(t, 2, echo6(t, f, host6, 2), "ICMPv6 echo masqueraded and its reply back")
	})
	t.Run("a fragmented datagram is reassembled, masqueraded whole and fragmented again, both ways", func(t *testing.T) {
		// f's kernel fragments a 4000-byte datagram (MTU 1500); the
		// host's echo of it comes back fragmented too
		var pc net.PacketConn
		var err error
		inNetns(t, host, func() { pc, err = net.ListenPacket("udp6", "["+host6+"]:9002") })
		require.NoError(t, err)
		defer pc.Close()
		from := make(chan string, 1)
		go func() {
			buf := make([]byte, 9000)
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				from <- err.Error()
				return
			}
			from <- a.(*net.UDPAddr).IP.String()
			pc.WriteTo(buf[:n], a)
		}()
		var c net.Conn
		inNetns(t, f, func() { c, err = net.Dial("udp6", "["+host6+"]:9002") })
		require.NoError(t, err)
		defer c.Close()
		big := make([]byte, 4000)
		_, _ = rand.Read(big)
		require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = c.Write(big)
		require.NoError(t, err)
		got := make([]byte, 9000)
		n, err := c.Read(got)
		require.NoError(t, err, "the fragmented echo came back")
		require.Equal(t, big, got[:n])
		require.Equal(t, uplink6, <-from, "the host saw address6")
	})
	t.Run("published TCP and UDP ports on address6 from the host side", func(t *testing.T) {
		require.Equal(t, host6, clientAddr(t, host, "["+uplink6+"]:8080"), "DNAT without SNAT")
		got, err := udpExchange(t, host, "["+uplink6+"]:5353")
		require.NoError(t, err)
		require.Equal(t, host6, got)
	})
	t.Run("TCP to a closed port of address6 is reset, as for IPv4", func(t *testing.T) {
		closedPortRefused(t, host, "["+uplink6+"]:7999")
		closedPortRefused(t, f, "["+uplink6+"]:7999")
	})
	t.Run("userland proxy on the host side's [::1]", func(t *testing.T) {
		require.Equal(t, host6, clientAddr(t, host, "[::1]:8080"), "relayed to the endpoint's ip6 from the host side")
		require.Equal(t, "10.253.0.1", clientAddr(t, host, "127.0.0.1:8080"), "IPv4 clients to its IPv4 address")
	})
	t.Run("hairpin from the same network", func(t *testing.T) {
		require.Equal(t, front6GW, clientAddr(t, f2, "["+uplink6+"]:8080"), "the server sees gateway6")
	})
	t.Run("gateway6 is the host, as the gateway is", func(t *testing.T) {
		require.Equal(t, uplink6, clientAddr(t, f, "["+front6GW+"]:9000"), "a host port at gateway6")
		require.Equal(t, front6GW, clientAddr(t, f2, "["+front6GW+"]:8080"), "a published port at gateway6")
	})
	t.Run("isolation holds for IPv6; published ports are reached across it", func(t *testing.T) {
		require.Equal(t, "fd00:b1::20", clientAddr(t, b, "["+uplink6+"]:8080"))
		before := portDrops(t, in, "gw/back")["isolated"]
		require.Zero(t, echo6(t, b, f6, 2), "back does not reach front")
		var err error
		inNetns(t, b, func() { _, err = net.DialTimeout("tcp6", "["+f6+"]:80", 2*time.Second) })
		require.Error(t, err, "nor its TCP ports")
		require.Zero(t, echo6(t, f, "fd00:b1::20", 1), "nor the other way")
		require.GreaterOrEqual(t, portDrops(t, in, "gw/back")["isolated"], before+3, "dropped and counted at the router")
	})
	t.Run("conntrack and rules show IPv6", func(t *testing.T) {
		out, err := in.cli("conntrack", "--family", "ipv6", "-o", "json")
		require.NoError(t, err, out)
		var entries []nat.Entry
		require.NoError(t, json.Unmarshal([]byte(out), &entries), out)
		var snat, dnat bool
		for _, e := range entries {
			require.Equal(t, "ipv6", e.Family)
			snat = snat || e.SNAT && e.Reply.Dst.String() == uplink6
			dnat = dnat || e.DNAT && e.Orig.Dst.String() == uplink6 && e.Reply.Src.String() == f6
		}
		require.True(t, snat, "a masqueraded connection: %s", out)
		require.True(t, dnat, "a connection to the published port: %s", out)
		out, err = in.cli("conntrack", "--src", host6, "--proto", "udp")
		require.NoError(t, err, out)
		require.Contains(t, out, "udp      17 ")
		require.Contains(t, out, "src="+host6+" dst="+uplink6+" sport=")
		out, err = in.cli("conntrack", "--proto", "icmpv6")
		require.NoError(t, err, out)
		require.Contains(t, out, "type=128 code=0")

		out, err = in.cli("rules")
		require.NoError(t, err, out)
		require.Regexp(t, `MASQUERADE\s+all\s+\*\s+uplink\s+fd00:b0::/64\s+::/0\s+/\* masquerade6 front \*/`, out)
		require.Contains(t, out, "to:["+f6+"]:80")
		out, err = in.cli("rules", "-o", "json")
		require.NoError(t, err, out)
		var rows []rule.Listed
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		counted := map[string]uint64{}
		for _, r := range rows {
			if r.Family == rule.FamilyIPv6 {
				counted[r.Comment] += r.Packets
			}
		}
		require.NotZero(t, counted["masquerade6 front"], "%v", counted)
		require.NotZero(t, counted["publish "+f+" 8080:80/tcp"], "%v", counted)
		require.NotZero(t, counted["hairpin "+f+" 8080:80/tcp"], "%v", counted)
		for c := range counted {
			require.False(t, strings.HasPrefix(c, "rule line"), c)
		}
	})
}
