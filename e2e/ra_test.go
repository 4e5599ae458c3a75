package e2e

import (
	bin "encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uswitch-dev/uswitch/packet"
)

// rawSocket is an AF_PACKET socket on eth0 of a namespace: it sends whole
// Ethernet frames and receives every IPv6 frame eth0 receives.
type rawSocket struct {
	fd  int
	idx int
}

func openRaw(t *testing.T, ns string) *rawSocket {
	t.Helper()
	r := &rawSocket{fd: -1}
	var err error
	inNetns(t, ns, func() {
		var l netlink.Link
		if l, err = netlink.LinkByName("eth0"); err != nil {
			return
		}
		r.idx = l.Attrs().Index
		proto := int(htons(unix.ETH_P_IPV6))
		if r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			return
		}
		err = unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: r.idx})
	})
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func (r *rawSocket) send(t *testing.T, frame []byte) {
	t.Helper()
	require.NoError(t, unix.Sendto(r.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: r.idx, Halen: 6}))
}

// waitFor reads frames until one satisfies match; it fails after 5 s.
// Every frame read is passed to seen first.
func (r *rawSocket) waitFor(t *testing.T, seen func([]byte), match func([]byte) bool) {
	t.Helper()
	buf := make([]byte, 9000)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 200); err != nil || n == 0 {
			continue
		}
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		require.NoError(t, err)
		f := buf[:n]
		seen(f)
		if match(f) {
			return
		}
	}
	t.Fatal("the control frame never arrived")
}

// eui64 is the link-local address Linux derives from mac.
func eui64(mac packet.MAC) net.IP {
	return net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
}

// icmp6Frame builds an ICMPv6 frame from mac/src to ff02::1 with the given
// type and body.
func icmp6Frame(t *testing.T, mac packet.MAC, src net.IP, typ uint8, body []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: src, DstIP: net.ParseIP("ff02::1")}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	require.NoError(t, ic.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr(mac[:]), DstMAC: net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv6},
		ip, ic, gopacket.Payload(body)))
	return append([]byte(nil), buf.Bytes()...)
}

// rogueRA is a router advertisement (lifetime 1800 s) with a prefix
// option for 2001:db8:77::/64, autonomous, as an attacker sends to become
// everyone's IPv6 router.
func rogueRA(t *testing.T, mac packet.MAC) []byte {
	body := make([]byte, 12) // hop limit, flags, lifetime, reachable, retrans (after the 4-byte header)
	body[0] = 64
	bin.BigEndian.PutUint16(body[2:], 1800)
	pi := make([]byte, 32)
	pi[0], pi[1], pi[2], pi[3] = 3, 4, 64, 0xc0 // prefix information, L and A
	bin.BigEndian.PutUint32(pi[4:], 86400)
	bin.BigEndian.PutUint32(pi[8:], 14400)
	copy(pi[16:], net.ParseIP("2001:db8:77::").To16())
	sll := append([]byte{1, 1}, mac[:]...)
	body = append(append(body, pi...), sll...)
	return icmp6Frame(t, mac, eui64(mac), layers.ICMPv6TypeRouterAdvertisement, body)
}

func raConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[[network]]
name = "front"
subnet = "10.94.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "front"
ip = "10.94.0.10"

[[endpoint]]
name = "%[1]s-b"
network = "front"
ip = "10.94.0.11"

[[endpoint]]
name = "%[1]s-c"
network = "front"
link = "veth"
ip = "10.94.0.12"
`, name)
}

func TestRAGuard(t *testing.T) {
	needRoot(t)
	name := prefix("ra")
	in := start(t, name, writeConfig(t, raConfig(name)))
	a, b, c := name+"-a", name+"-b", name+"-c"
	mac := func(ns string) packet.MAC {
		var m packet.MAC
		inNetns(t, ns, func() {
			l, err := netlink.LinkByName("eth0")
			require.NoError(t, err)
			copy(m[:], l.Attrs().HardwareAddr)
		})
		return m
	}
	macA := mac(a)
	for _, ns := range []string{a, b, c} {
		var v []byte
		var err error
		inNetns(t, ns, func() { v, err = os.ReadFile("/proc/sys/net/ipv6/conf/eth0/accept_ra") })
		require.NoError(t, err)
		require.Equal(t, "0", strings.TrimSpace(string(v)), "accept_ra on eth0 in %s", ns)
	}

	sender := openRaw(t, a)
	receivers := []*rawSocket{openRaw(t, b), openRaw(t, c)}
	// control is what a may send: an echo request from its own link-local
	// address; its arrival after the probe shows the probe was not delayed
	// but dropped (one port's frames are switched in order).
	control := icmp6Frame(t, macA, eui64(macA), layers.ICMPv6TypeEchoRequest, []byte{0, 1, 0, 1, 'o', 'k'})
	isControl := func(f []byte) bool { return string(f) == string(control) }
	for _, probe := range []struct {
		name   string
		frame  []byte
		reason string
	}{
		{"rogue router advertisement", rogueRA(t, macA), "ra-guard"},
		{"forged link-local source", icmp6Frame(t, macA, net.ParseIP("fe80::1"), layers.ICMPv6TypeEchoRequest, []byte{0, 1, 0, 2}), "spoofed-ipv6"},
	} {
		t.Run(probe.name, func(t *testing.T) {
			before := in.port(t, a).Drops[probe.reason]
			sender.send(t, probe.frame)
			sender.send(t, control)
			for _, r := range receivers {
				r.waitFor(t, func(f []byte) {
					require.NotEqual(t, string(probe.frame), string(f), "the probe reached another endpoint")
				}, isControl)
			}
			require.Equal(t, before+1, in.port(t, a).Drops[probe.reason])
		})
	}
	// Nobody took the rogue prefix or route.
	for _, ns := range []string{b, c} {
		inNetns(t, ns, func() {
			addrs, err := netlink.AddrList(nil, netlink.FAMILY_V6)
			require.NoError(t, err)
			for _, ad := range addrs {
				require.False(t, strings.HasPrefix(ad.IP.String(), "2001:db8:77:"), "%s took %s", ns, ad.IP)
			}
			routes, err := netlink.RouteList(nil, netlink.FAMILY_V6)
			require.NoError(t, err)
			for _, rt := range routes {
				require.False(t, rt.Dst == nil && rt.Gw != nil, "%s has a default route via %s", ns, rt.Gw)
			}
		})
	}
}
