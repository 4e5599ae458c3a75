package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/packet"
)

// ipv6Config is one dual-stack network with three endpoints: a and b by
// IPAM (fd00:95::2 and ::3), c on a veth with a given ip6.
func ipv6Config(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[[network]]
name = "front"
subnet = "10.95.0.0/24"
subnet6 = "fd00:95::/64"

[[endpoint]]
name = "%[1]s-a"
network = "front"
ip = "10.95.0.10"

[[endpoint]]
name = "%[1]s-b"
network = "front"
ip = "10.95.0.11"

[[endpoint]]
name = "%[1]s-c"
network = "front"
link = "veth"
ip = "10.95.0.12"
ip6 = "fd00:95::99"
`, name)
}

// echo6 sends count ICMPv6 echo requests from inside namespace ns to dst
// with a raw socket and returns how many were answered by dst.
func echo6(t *testing.T, ns, dst string, count int) int {
	t.Helper()
	host, zone, _ := strings.Cut(dst, "%")
	to := net.ParseIP(host)
	require.NotNil(t, to, dst)
	c := icmp6Conn(t, ns)
	if zone != "" { // an interface of the namespace: resolved there
		var ifi *net.Interface
		var err error
		inNetns(t, ns, func() { ifi, err = net.InterfaceByName(zone) })
		require.NoError(t, err)
		zone = strconv.Itoa(ifi.Index)
	}
	id := int(echoIDs.Add(1) & 0xffff)
	got := 0
	buf := make([]byte, 1500)
	for seq := 1; seq <= count; seq++ {
		payload := fmt.Appendf(nil, "uswitch e2e echo6 %d/%d", id, seq)
		req, err := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}).Marshal(nil)
		require.NoError(t, err)
		if _, err := c.WriteTo(req, &net.IPAddr{IP: to, Zone: zone}); err != nil {
			t.Logf("echo6 %s from %s seq %d: %v", dst, ns, seq, err)
			continue
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second)))
		for {
			n, from, err := c.ReadFrom(buf)
			if isTimeout(err) {
				t.Logf("echo6 %s from %s seq %d: no answer", dst, ns, seq)
				break
			}
			require.NoError(t, err)
			m, err := icmp.ParseMessage(58, buf[:n])
			if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
				continue
			}
			if b, ok := m.Body.(*icmp.Echo); ok && b.ID == id && b.Seq == seq && bytes.Equal(b.Data, payload) &&
				from.(*net.IPAddr).IP.Equal(to) {
				got++
				break
			}
		}
	}
	return got
}

// echo6Frame is an ICMPv6 echo request frame from srcMAC/src to dstMAC/dst.
func echo6Frame(t *testing.T, srcMAC, dstMAC packet.MAC, src, dst string, payload []byte) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	require.NoError(t, ic.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(dstMAC[:]), EthernetType: layers.EthernetTypeIPv6},
		ip, ic, &layers.ICMPv6Echo{Identifier: 7, SeqNumber: 1}, gopacket.Payload(payload)))
	return append([]byte(nil), buf.Bytes()...)
}

func TestIPv6OneNetwork(t *testing.T) {
	needRoot(t)
	name := prefix("v6")
	cfg := writeConfig(t, ipv6Config(name))
	a, b, c := name+"-a", name+"-b", name+"-c"
	const a6, b6, c6 = "fd00:95::2", "fd00:95::3", "fd00:95::99"

	t.Run("check resolves ip6", func(t *testing.T) {
		out, err := exec.Command(binary, "check", "--config", cfg, "-o", "json").Output()
		require.NoError(t, err)
		var p config.Plan
		require.NoError(t, json.Unmarshal(out, &p), string(out))
		require.Equal(t, "fd00:95::1", p.Networks[0].Gateway6.String())
		var got []string
		for _, e := range p.Endpoints {
			got = append(got, e.Interfaces[0].Prefix6.String())
		}
		require.Equal(t, []string{a6 + "/64", b6 + "/64", c6 + "/64"}, got)
		text, err := exec.Command(binary, "check", "--config", cfg).Output()
		require.NoError(t, err)
		require.Contains(t, string(text), "10.95.0.10/24,fd00:95::2/64")
	})

	in := start(t, name, cfg)

	t.Run("addresses and default route inside the namespace", func(t *testing.T) {
		out, err := nsExec(a, "ip", "-6", "addr", "show", "dev", "eth0")
		require.NoError(t, err, out)
		require.Contains(t, out, "inet6 "+a6+"/64 scope global nodad")
		require.Contains(t, out, "inet6 fe80::42:aff:fe5f:a/64 scope link nodad", "the EUI-64 link-local of 02:42:0a:5f:00:0a")
		require.NotContains(t, out, "tentative")
		out, err = nsExec(a, "ip", "-6", "route", "show", "default")
		require.NoError(t, err, out)
		require.Contains(t, out, "default via fd00:95::1 dev eth0")
	})

	t.Run("ping6 between endpoints, tap and veth", func(t *testing.T) {
		require.Equal(t, 3, echo6(t, a, b6, 3))
		require.Equal(t, 3, echo6(t, a, c6, 3))
		require.Equal(t, 3, echo6(t, c, a6, 3))
		require.Equal(t, 2, echo6(t, b, "fe80::42:aff:fe5f:c%eth0", 2), "link-local too")
	})

	t.Run("TCP transfer over IPv6", func(t *testing.T) {
		transfer6(t, a, b, "["+b6+"]:7601", 4<<20)
	})

	t.Run("getent ahosts returns the IPv6 address", func(t *testing.T) {
		out, err := nsExec(a, "getent", "ahosts", b)
		require.NoError(t, err, out)
		require.Contains(t, out, b6+" ")
		require.Contains(t, out, "10.95.0.11 ")
		out, err = nsExec(b, "getent", "ahostsv6", c)
		require.NoError(t, err, out)
		require.True(t, strings.HasPrefix(out, c6+" "), out)
	})

	t.Run("endpoints and networks added while running", func(t *testing.T) {
		d, e := name+"-d", name+"-e"
		out, err := in.cli("endpoint", "add", d, "--network", "front", "-o", "json")
		require.NoError(t, err, out)
		require.Contains(t, out, `"ip6": "fd00:95::4/64"`, "IPAM: the lowest free after a, b")
		require.Equal(t, 2, echo6(t, a, "fd00:95::4", 2))
		require.Equal(t, 2, echo6(t, d, c6, 2), "the others' addresses survive the change")

		out, err = in.cli("network", "add", "live6", "--subnet", "10.96.0.0/24", "--subnet6", "fd00:96::/64")
		require.NoError(t, err, out)
		require.Contains(t, out, "10.96.0.0/24,fd00:96::/64")
		out, err = in.cli("endpoint", "add", e, "--network", "live6", "--ip6", "fd00:96::7")
		require.NoError(t, err, out)
		out, err = nsExec(e, "ip", "-6", "route", "show", "default")
		require.NoError(t, err, out)
		require.Contains(t, out, "default via fd00:96::1 dev eth0")
		out, err = in.cli("endpoint", "ls")
		require.NoError(t, err, out)
		require.Contains(t, out, "10.96.0.2/24,fd00:96::7/64")
	})

	t.Run("spoofed IPv6 source dropped and counted", func(t *testing.T) {
		macA := packet.MAC{0x02, 0x42, 10, 95, 0, 10}
		macC := packet.MAC{0x02, 0x42, 10, 95, 0, 12}
		sa := openRaw(t, a)
		sc := openRaw(t, c)
		before := portDrops(t, in, a)["spoofed-ipv6"]
		spoofed := echo6Frame(t, macA, macC, b6, c6, []byte("spoofed from b's address"))
		honest := echo6Frame(t, macA, macC, a6, c6, []byte("honest marker"))
		sa.send(t, spoofed)
		sa.send(t, honest)
		sawSpoofed := false
		sc.waitFor(t, func(f []byte) {
			sawSpoofed = sawSpoofed || bytes.Contains(f, []byte("spoofed from b's address"))
		}, func(f []byte) bool { return bytes.Contains(f, []byte("honest marker")) })
		require.False(t, sawSpoofed, "the spoofed frame reached c")
		require.Equal(t, before+1, portDrops(t, in, a)["spoofed-ipv6"])
	})
}

// TestIPv6CNIAttachment: on a dual-stack network, a CNI attachment gets an
// IPv6 address by IPAM too, the plugin's result lists it with gateway6 and
// an IPv6 default route, CHECK accepts it, and it reaches a configured
// endpoint over IPv6.
func TestIPv6CNIAttachment(t *testing.T) {
	needRoot(t)
	name := prefix("cn6")
	start(t, name, writeConfig(t, fmt.Sprintf(`
name = %[1]q

[[network]]
name = "front"
subnet = "10.97.0.0/24"
subnet6 = "fd00:97::/64"

[[endpoint]]
name = "%[1]s-srv"
network = "front"
ip6 = "fd00:97::200"
`, name)))
	netName := name + "net"
	rt := newCNIRuntime(t, "", uswitchConflist(netName, name))
	c1 := name + "-c1"
	newNetns(t, c1)
	res := rt.add(netName, c1, "")
	var got []string
	for _, ip := range res.IPs {
		got = append(got, ip.Address.String()+" via "+ip.Gateway.String())
	}
	require.Equal(t, []string{"10.97.0.3/24 via 10.97.0.1", "fd00:97::2/64 via fd00:97::1"}, got)
	var routes []string
	for _, r := range res.Routes {
		routes = append(routes, r.Dst.String()+" via "+r.GW.String())
	}
	require.Contains(t, routes, "::/0 via fd00:97::1")
	rt.mustRun("check", netName, netnsPath(c1))
	require.Equal(t, 2, echo6(t, c1, "fd00:97::200", 2))
	require.Equal(t, 2, echo6(t, name+"-srv", "fd00:97::2", 2))
	rt.mustRun("del", netName, netnsPath(c1))
}
