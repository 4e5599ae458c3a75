package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// route6Config: two open dual-stack networks, front (MTU 1500) and back
// (MTU 1280), both masqueraded (a ULA subnet6's default),
// two endpoints on front and one on back, and an uplink with IPv6 whose
// host side lives in a namespace of the test's own.
func route6Config(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.252.0.2/30"
host_address = "10.252.0.1/30"
address6 = "fd00:fa::2/64"
host_address6 = "fd00:fa::1/64"
netns = "%[1]s-host"

[[network]]
name = "front"
subnet = "10.83.0.0/24"
subnet6 = "fd00:a0::/64"
isolate = false

[[network]]
name = "back"
subnet = "10.84.0.0/24"
subnet6 = "fd00:a1::/64"
isolate = false
mtu = 1280

[[endpoint]]
name = "%[1]s-f1"
network = "front"
ip6 = "fd00:a0::10"

[[endpoint]]
name = "%[1]s-f2"
network = "front"
ip6 = "fd00:a0::11"

[[endpoint]]
name = "%[1]s-b"
network = "back"
link = "veth"
ip6 = "fd00:a1::20"
`, name)
}

// icmp6Conn is a raw ICMPv6 socket opened inside namespace ns.
func icmp6Conn(t *testing.T, ns string) *icmp.PacketConn {
	t.Helper()
	h, err := nsthread.Open(ns)
	require.NoError(t, err)
	defer h.Close()
	var c *icmp.PacketConn
	require.NoError(t, nsthread.In(h, func() error {
		var err error
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

// probe6Result is what came back for one echo request: its reply, or an
// ICMPv6 error quoting it.
type probe6Result struct {
	reply bool
	typ   ipv6.ICMPType // of the error
	code  int
	from  string
	mtu   int // of a packet too big
}

// probe6 sends one ICMPv6 echo request of size payload bytes from
// namespace ns to dst with hop limit hop (0: the default) and returns the
// reply or the error that quotes it, failing the test when neither comes
// within 6 s (an address unreachable waits for three solicitations).
func probe6(t *testing.T, ns, dst string, hop, size int) probe6Result {
	t.Helper()
	c := icmp6Conn(t, ns)
	if hop != 0 {
		require.NoError(t, c.IPv6PacketConn().SetHopLimit(hop))
	}
	id := int(echoIDs.Add(1) & 0xffff)
	payload := make([]byte, size)
	copy(payload, fmt.Sprintf("uswitch e2e probe6 %d", id))
	req, err := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: 1, Data: payload}}).Marshal(nil)
	require.NoError(t, err)
	_, err = c.WriteTo(req, &net.IPAddr{IP: net.ParseIP(dst)})
	require.NoError(t, err, "send to %s from %s", dst, ns)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(6*time.Second)))
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		require.NoError(t, err, "no answer to the probe of %s from %s", dst, ns)
		m, err := icmp.ParseMessage(58, buf[:n])
		if err != nil {
			continue
		}
		r := probe6Result{typ: m.Type.(ipv6.ICMPType), code: m.Code, from: from.(*net.IPAddr).IP.String()}
		var quoted []byte
		switch b := m.Body.(type) {
		case *icmp.Echo:
			if m.Type == ipv6.ICMPTypeEchoReply && b.ID == id && bytes.Equal(b.Data, payload) {
				return probe6Result{reply: true, from: r.from}
			}
			continue
		case *icmp.TimeExceeded:
			quoted = b.Data
		case *icmp.DstUnreach:
			quoted = b.Data
		case *icmp.PacketTooBig:
			quoted, r.mtu = b.Data, b.MTU
		default:
			continue
		}
		// the quote is our request: IPv6 header, then echo request id
		if len(quoted) >= 40+8 && quoted[40] == byte(ipv6.ICMPTypeEchoRequest) && int(quoted[44])<<8|int(quoted[45]) == id {
			return r
		}
	}
}

func TestIPv6Routed(t *testing.T) {
	needRoot(t)
	name := prefix("r6")
	in := start(t, name, writeConfig(t, route6Config(name)))
	f1, f2, b, host := name+"-f1", name+"-f2", name+"-b", name+"-host"
	const f16, f26, b6 = "fd00:a0::10", "fd00:a0::11", "fd00:a1::20"

	t.Run("ping6 between endpoints of a network", func(t *testing.T) {
		require.Equal(t, 3, echo6(t, f1, f26, 3))
		require.Equal(t, 3, echo6(t, f2, f16, 3))
	})

	t.Run("ping6 to the gateway", func(t *testing.T) {
		require.Equal(t, 2, echo6(t, f1, "fd00:a0::1", 2))
		require.Equal(t, 2, echo6(t, b, "fd00:a1::1", 2))
		require.Equal(t, 2, echo6(t, f1, "fd00:a1::1", 2), "the other network's gateway")
		require.Equal(t, 2, echo6(t, f1, "fd00:fa::2", 2), "the uplink's address")
		require.Equal(t, 2, echo6(t, f1, "fe80::42:aff:fe53:1%eth0", 2), "the gateway's link-local address (EUI-64 of 02:42:0a:53:00:01)")
		out, err := in.cli("neigh")
		require.NoError(t, err, out)
		require.Contains(t, out, f16)
		require.Regexp(t, `fd00:a0::10\s+gw/front\s+02:42:0a:53:00:02\s+REACHABLE`, out)
	})

	t.Run("ping6 and TCP between open networks", func(t *testing.T) {
		require.Equal(t, 3, echo6(t, f1, b6, 3))
		require.Equal(t, 3, echo6(t, b, f16, 3))
		transfer6(t, b, f1, "["+f16+"]:7611", 1<<20)
	})

	t.Run("hop limit expiry answered with time exceeded", func(t *testing.T) {
		r := probe6(t, f1, b6, 1, 16)
		require.Equal(t, probe6Result{typ: ipv6.ICMPTypeTimeExceeded, code: 0, from: "fd00:a0::1"}, r)
		r = probe6(t, f1, b6, 2, 16)
		require.True(t, r.reply, "hop limit 2 reaches a neighbour network: %+v", r)
	})

	t.Run("address unreachable when no neighbour answers", func(t *testing.T) {
		// The uplink's default route leads to the host side, which has
		// no route back out: what it does is the host's business. An
		// address in the uplink's own subnet that nobody holds gets
		// address unreachable from the router, after its solicitations:
		// front is masqueraded, and the error reaches f1 all the same,
		// quoting f1's own packet (as Linux translates it back).
		r := probe6(t, f1, "fd00:fa::99", 0, 16)
		require.Equal(t, probe6Result{typ: ipv6.ICMPTypeDestinationUnreachable, code: 3, from: "fd00:a0::1"}, r)
	})

	t.Run("packet too big across networks with different MTUs", func(t *testing.T) {
		before := portDrops(t, in, "gw/front")["packet-too-big"]
		r := probe6(t, f2, b6, 0, 1400)
		require.Equal(t, probe6Result{typ: ipv6.ICMPTypePacketTooBig, from: "fd00:a0::1", mtu: 1280}, r)
		require.Equal(t, before+1, portDrops(t, in, "gw/front")["packet-too-big"])
		// f2's kernel learned the path MTU: the next big ping is
		// fragmented by f2 itself, and answered
		require.Equal(t, 1, echo6(t, f2, b6, 1))

		// TCP adapts: b advertises an MSS as large as front's MTU allows
		// (advmss on its route), so f1 sends 1500-byte packets that the
		// router refuses with packet too big; f1 lowers its path MTU and
		// the transfer completes.
		mustNsExec(t, b, "ip", "-6", "route", "change", "default", "via", "fd00:a1::1", "dev", "eth0", "advmss", "1440")
		before = portDrops(t, in, "gw/front")["packet-too-big"]
		transfer6(t, f1, b, "["+b6+"]:7612", 4<<20)
		require.Greater(t, portDrops(t, in, "gw/front")["packet-too-big"], before, "the router answered packet too big")
		out, err := nsExec(f1, "ip", "-6", "route", "get", b6)
		require.NoError(t, err, out)
		require.Contains(t, out, "mtu 1280", "f1 learned the path MTU")
	})

	t.Run("the host side reaches endpoints over IPv6", func(t *testing.T) {
		out, err := nsExec(host, "ip", "-6", "route", "show")
		require.NoError(t, err, out)
		require.Contains(t, out, "fd00:a0::/64 via fd00:fa::2 dev "+name+"-up")
		require.Contains(t, out, "fd00:a1::/64 via fd00:fa::2 dev "+name+"-up")
		require.NotContains(t, out, "default", "routes to the test's subnets only")
		out, err = nsExec(host, "ip", "-6", "addr", "show", "dev", name+"-up")
		require.NoError(t, err, out)
		require.Contains(t, out, "inet6 fd00:fa::1/64 scope global nodad")
		require.Equal(t, 2, echo6(t, host, f16, 2))
		require.Equal(t, 2, echo6(t, host, b6, 2))
		require.Equal(t, 2, echo6(t, f1, "fd00:fa::1", 2), "and endpoints reach it")
		transfer6(t, f1, host, "[fd00:fa::1]:7613", 1<<20)
	})

	t.Run("uplink down and up: host_address6 and the routes come back", func(t *testing.T) {
		// the kernel drops a link's IPv6 addresses when it goes down
		mustNsExec(t, host, "ip", "link", "set", name+"-up", "down")
		mustNsExec(t, host, "ip", "link", "set", name+"-up", "up")
		require.Eventually(t, func() bool {
			out, err := nsExec(host, "ip", "-6", "route", "show", "fd00:a1::/64")
			return err == nil && strings.Contains(out, "via fd00:fa::2")
		}, 10*time.Second, 50*time.Millisecond, "the route to back's subnet6 restored")
		out, err := nsExec(host, "ip", "-6", "addr", "show", "dev", name+"-up")
		require.NoError(t, err, out)
		require.Contains(t, out, "inet6 fd00:fa::1/64 scope global nodad")
		require.Equal(t, 2, echo6(t, host, b6, 2))
	})
}

// transfer6 sends n random bytes over TCP from namespace from to a
// listener at addr in namespace to, and fails the test unless they arrive
// intact within 60 s.
func transfer6(t *testing.T, from, to, addr string, n int) {
	t.Helper()
	var l net.Listener
	var err error
	inNetns(t, to, func() { l, err = net.Listen("tcp6", addr) })
	require.NoError(t, err)
	defer l.Close()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer s.Close()
		b, _ := io.ReadAll(s)
		got <- b
	}()
	var conn net.Conn
	inNetns(t, from, func() {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err = d.Dial("tcp6", addr)
	})
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(60*time.Second)))
	_, err = conn.Write(data)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	select {
	case b := <-got:
		require.True(t, bytes.Equal(data, b), "received %d of %d bytes intact?", len(b), len(data))
	case <-time.After(60 * time.Second):
		t.Fatal("transfer did not complete")
	}
}
