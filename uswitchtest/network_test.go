package uswitchtest_test

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/uswitchtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo serves TCP connections on l: it writes the client's address, then
// echoes until the client closes. What it served is closed when the test
// ends; ended receives each connection's end.
func echo(t *testing.T, l net.Listener) (ended <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	ends := make(chan struct{}, 16)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.WriteString(c, c.RemoteAddr().String()+"\n")
				io.Copy(c, c)
				c.Close()
				ends <- struct{}{}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ends
}

// dialLine dials addr from st and returns the first line the server writes.
func dialLine(t *testing.T, st *uswitchtest.Stack, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := st.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	k, err := c.Read(b)
	require.NoError(t, err)
	return strings.TrimSpace(string(b[:k]))
}

func TestBadConfigIsAnError(t *testing.T) {
	_, err := uswitchtest.Start("[[network]]\nname = \"a\"\nsubnet = \"nonsense\"\n")
	require.ErrorContains(t, err, "net.toml:3:")
}

// TestMasqueradeAndConntrack: an endpoint's connection to the host side
// leaves with the uplink address, and conntrack shows it SNATed; after
// the connection has closed and the fake clock has moved past its
// timeout, the entry is gone.
func TestMasqueradeAndConntrack(t *testing.T) {
	n := uswitchtest.New(t, lab)
	l, err := n.Host().Stack().Listen("tcp", ":7000")
	require.NoError(t, err)
	ended := echo(t, l)

	from := dialLine(t, n.Endpoint("client").Stack(), "10.250.0.1:7000")
	require.True(t, strings.HasPrefix(from, "10.250.0.2:"), from)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the client close")
	}

	ct := n.Conntrack()
	require.Len(t, ct, 1)
	require.True(t, ct[0].SNAT)
	require.Equal(t, "172.20.0.20", ct[0].Orig.Src.String())
	require.Equal(t, "10.250.0.2", ct[0].Reply.Dst.String())

	// Once the last ACK has gone through, nothing more is sent: move the
	// clock past TIME_WAIT's timeout and the connection is gone.
	require.Eventually(t, func() bool {
		ct := n.Conntrack()
		return len(ct) == 1 && ct[0].State == "TIME_WAIT"
	}, 5*time.Second, time.Millisecond)
	n.Clock().Advance(119 * time.Second)
	require.Len(t, n.Conntrack(), 1)
	n.Clock().Advance(2 * time.Second)
	require.Empty(t, n.Conntrack())
}

// TestPublishedPortAndHairpin: the host side reaches web's published port
// at the uplink address, and so does client on web's own network (hairpin:
// web sees the gateway).
func TestPublishedPortAndHairpin(t *testing.T) {
	n := uswitchtest.New(t, lab)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	echo(t, l)

	require.True(t, strings.HasPrefix(dialLine(t, n.Host().Stack(), "10.250.0.2:8080"), "10.250.0.1:"))
	require.True(t, strings.HasPrefix(dialLine(t, n.Endpoint("client").Stack(), "10.250.0.2:8080"), "172.20.0.1:"))
}

// TestUDPAcrossNetworks: ListenPacket and a UDP dial by name, routed from
// front to a network that is not isolated.
func TestUDPAcrossNetworks(t *testing.T) {
	open := strings.Replace(lab, "isolate = true", "isolate = false", 1)
	open = strings.Replace(open, "subnet = \"172.20.0.0/24\"", "subnet = \"172.20.0.0/24\"\nisolate = false", 1)
	n := uswitchtest.New(t, open)
	pc, err := n.Endpoint("db").Stack().ListenPacket("udp", ":5353")
	require.NoError(t, err)
	defer pc.Close()

	c, err := n.Endpoint("web").Stack().DialContext(context.Background(), "udp", "172.21.0.30:5353")
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)

	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	k, from, err := pc.ReadFrom(b)
	require.NoError(t, err)
	require.Equal(t, "ping", string(b[:k]))
	require.Equal(t, "172.20.0.10", from.(*net.UDPAddr).IP.String()) // routed, not masqueraded
}

// TestDNSUpstreamOnTheHostSide: a name the embedded DNS does not own is
// forwarded to the [dns] upstream, which the test serves on the host side.
func TestDNSUpstreamOnTheHostSide(t *testing.T) {
	n := uswitchtest.New(t, lab+"\n[dns]\nupstream = [\"10.250.0.1:53\"]\n")
	pc, err := n.Host().Stack().ListenPacket("udp", ":53")
	require.NoError(t, err)
	srv := &miekg.Server{PacketConn: pc, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, q *miekg.Msg) {
		r := new(miekg.Msg)
		r.SetReply(q)
		rr, _ := miekg.NewRR(q.Question[0].Name + " 60 IN A 192.0.2.7")
		r.Answer = append(r.Answer, rr)
		w.WriteMsg(r)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.ActivateAndServe() }()
	defer func() { srv.Shutdown(); <-served }()

	addrs, err := n.Endpoint("client").Stack().LookupHost(context.Background(), "example.com")
	require.NoError(t, err)
	require.Equal(t, []string{"192.0.2.7"}, addrs)

	_, err = n.Endpoint("client").Stack().LookupHost(context.Background(), "nosuchendpoint")
	require.NoError(t, err, "single labels are forwarded too, as Docker does")
}

// TestUnknownNameIsNotFound: without upstream, an unknown single label is
// NXDOMAIN, a *net.DNSError with IsNotFound.
func TestUnknownNameIsNotFound(t *testing.T) {
	n := uswitchtest.New(t, lab)
	_, err := n.Endpoint("client").Stack().LookupHost(context.Background(), "nosuch")
	var de *net.DNSError
	require.ErrorAs(t, err, &de)
	require.True(t, de.IsNotFound, err.Error())
}

// TestCapture: the pcap file holds the frames of the port, both ways.
func TestCapture(t *testing.T) {
	n := uswitchtest.New(t, lab)
	c := n.Capture("client")
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	echo(t, l)
	dialLine(t, n.Endpoint("client").Stack(), "web:80")
	require.NoError(t, c.Stop())

	f, err := os.Open(c.Path())
	require.NoError(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	var arp, dns, syn, synack int
	for {
		data, _, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(layers.LayerTypeARP) != nil {
			arp++
		}
		if u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && (u.DstPort == 53 || u.SrcPort == 53) {
			dns++
		}
		if tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.SYN {
			if tcp.ACK {
				synack++
			} else {
				syn++
			}
		}
	}
	require.Positive(t, arp)
	require.GreaterOrEqual(t, dns, 2, "query and answer")
	require.Positive(t, syn)
	require.Positive(t, synack)
}

// TestRawFramesAndStacksTogether: Recv sees what the datapath sends to a
// port until a stack owns it; then the stack answers, here an ARP request
// that client sends as a raw frame.
func TestRawFramesAndStacksTogether(t *testing.T) {
	n := uswitchtest.New(t, lab)
	web, client := n.Endpoint("web"), n.Endpoint("client")
	ask := arpRequest(client.MAC(), client.Addr().Addr().As4(), web.Addr().Addr().As4())

	client.Send(ask)
	require.Equal(t, ask, web.Recv(time.Second), "the broadcast reaches web's port as it was sent")

	web.Stack()
	client.Send(ask)
	reply := client.Recv(time.Second)
	require.NotNil(t, reply, "web's stack answers")
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	require.True(t, ok, p.String())
	require.EqualValues(t, layers.ARPReply, a.Operation)
	require.Equal(t, web.MAC().String(), net.HardwareAddr(a.SourceHwAddress).String())
	require.Nil(t, web.Recv(50*time.Millisecond), "frames to a port with a stack go to the stack")
}

// TestUnprivileged runs the scenarios of the package as uid 65534 when the
// tests run as root (as they do in CI), to show that nothing needs
// privileges.
func TestUnprivileged(t *testing.T) {
	if !testenv.Unprivileged(t) {
		return
	}
	n := uswitchtest.New(t, lab)
	l, err := n.Endpoint("web").Stack().Listen("tcp", ":80")
	require.NoError(t, err)
	echo(t, l)
	require.True(t, strings.HasPrefix(dialLine(t, n.Endpoint("client").Stack(), "web:80"), "172.20.0.20:"))
	require.True(t, strings.HasPrefix(dialLine(t, n.Host().Stack(), "10.250.0.2:8080"), "10.250.0.1:"))
}
