package proxy

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

func TestMappings(t *testing.T) {
	plan := &config.Plan{Endpoints: []config.Endpoint{
		{
			Name: "web", Mode: config.ModeBridge,
			Interfaces: []config.Interface{
				{Name: "eth0", IP: netip.MustParseAddr("172.20.0.10")},
				{Name: "eth1", IP: netip.MustParseAddr("172.21.0.10")},
			},
			Publish: []config.Publish{
				{HostPort: 8080, ContainerPort: 80, Proto: "tcp"},
				{HostPort: 5353, ContainerPort: 53, Proto: "udp"},
			},
		},
		{Name: "quiet", Mode: config.ModeBridge, Interfaces: []config.Interface{{IP: netip.MustParseAddr("172.20.0.11")}}},
		{Name: "host", Mode: config.ModeHost, Publish: []config.Publish{{HostPort: 1, ContainerPort: 1, Proto: "tcp"}}},
		{Name: "none", Mode: config.ModeNone, Publish: []config.Publish{{HostPort: 2, ContainerPort: 2, Proto: "tcp"}}},
		{
			Name: "api", Mode: config.ModeBridge,
			Interfaces: []config.Interface{{IP: netip.MustParseAddr("172.21.0.5")}},
			Publish:    []config.Publish{{HostPort: 40000, ContainerPort: 9000, Proto: "tcp", Random: true}},
		},
	}}
	require.Equal(t, []Mapping{
		{Proto: "tcp", HostPort: 8080, Target: netip.MustParseAddrPort("172.20.0.10:80"), Endpoint: "web"},
		{Proto: "udp", HostPort: 5353, Target: netip.MustParseAddrPort("172.20.0.10:53"), Endpoint: "web"},
		{Proto: "tcp", HostPort: 40000, Target: netip.MustParseAddrPort("172.21.0.5:9000"), Endpoint: "api"},
	}, Mappings(plan))
	require.Empty(t, Mappings(&config.Plan{}))
	require.Nil(t, Mappings(nil))
}

// testLog logs to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// freePort returns a port that is free for both TCP and UDP on all
// addresses right now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", ":0")
		require.NoError(t, err)
		port := uint16(l.Addr().(*net.TCPAddr).Port)
		u, err := net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// serveTCP serves ln with handle, one goroutine per connection, until the
// test ends.
func serveTCP(t *testing.T, ln net.Listener, handle func(c *net.TCPConn)) netip.AddrPort {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echo streams back what it reads and half-closes at EOF.
func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		c.CloseWrite()
		io.Copy(io.Discard, c)
	}
}

// replyAfterEOF reads everything until EOF and only then answers.
func replyAfterEOF(c *net.TCPConn) {
	data, err := io.ReadAll(c)
	if err != nil {
		return
	}
	fmt.Fprintf(c, "got %d bytes: %s", len(data), data)
}

func listenTCP(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	return ln
}

// udpEcho echoes datagrams on pc and records who sent them.
type udpEcho struct {
	addr  netip.AddrPort
	mu    sync.Mutex
	peers map[netip.AddrPort]int
}

func serveUDPEcho(t *testing.T, pc *net.UDPConn) *udpEcho {
	e := &udpEcho{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), peers: map[netip.AddrPort]int{}}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.peers[from]++
			e.mu.Unlock()
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return e
}

func (e *udpEcho) numPeers() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.peers)
}

func listenUDP(t *testing.T) *net.UDPConn {
	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	require.NoError(t, err)
	return pc
}

func startProxy(t *testing.T, ns string, maps []Mapping, opts options) *Proxy {
	t.Helper()
	p, err := start(t.Context(), ns, maps, testLog(t), opts)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func dialTCP(t *testing.T, port uint16) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	return c.(*net.TCPConn)
}

func dialUDP(t *testing.T, port uint16) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// udpRoundTrip sends msg and returns the reply, or an error after wait.
func udpRoundTrip(c *net.UDPConn, msg []byte, wait time.Duration) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func TestTCPRoundTripAndHalfClose(t *testing.T) {
	echoAddr := serveTCP(t, listenTCP(t), echo)
	eofAddr := serveTCP(t, listenTCP(t), replyAfterEOF)
	echoPort, eofPort := freePort(t), freePort(t)
	startProxy(t, "", []Mapping{
		{Proto: "tcp", HostPort: echoPort, Target: echoAddr, Endpoint: "echo"},
		{Proto: "tcp", HostPort: eofPort, Target: eofAddr, Endpoint: "eof"},
	}, defaultOptions())

	t.Run("round trip", func(t *testing.T) {
		c := dialTCP(t, echoPort)
		for i := range 3 {
			msg := fmt.Sprintf("hello %d", i)
			_, err := c.Write([]byte(msg))
			require.NoError(t, err)
			buf := make([]byte, len(msg))
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err)
			require.Equal(t, msg, string(buf))
		}
		require.NoError(t, c.CloseWrite())
		rest, err := io.ReadAll(c)
		require.NoError(t, err, "the server's half-close reaches the client as EOF")
		require.Empty(t, rest)
	})

	t.Run("half close", func(t *testing.T) {
		c := dialTCP(t, eofPort)
		_, err := c.Write([]byte("ping"))
		require.NoError(t, err)
		require.NoError(t, c.CloseWrite())
		reply, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, "got 4 bytes: ping", string(reply))
	})

	t.Run("concurrent clients", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", echoPort), 2*time.Second)
				if !assert.NoError(t, err) {
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				data := make([]byte, 256*1024+i)
				rand.Read(data)
				go func() {
					c.Write(data)
					c.(*net.TCPConn).CloseWrite()
				}()
				got, err := io.ReadAll(c)
				assert.NoError(t, err)
				assert.True(t, bytes.Equal(data, got), "client %d: %d bytes back of %d", i, len(got), len(data))
			})
		}
		wg.Wait()
	})
}

func TestTCPDialFailureClosesClient(t *testing.T) {
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), freePort(t)) // nothing listens there
	port := freePort(t)
	startProxy(t, "", []Mapping{{Proto: "tcp", HostPort: port, Target: dead, Endpoint: "dead"}}, defaultOptions())
	c := dialTCP(t, port)
	_, err := io.ReadAll(c)
	if err != nil {
		require.ErrorIs(t, err, syscall.ECONNRESET)
	}
}

func TestUDP(t *testing.T) {
	e := serveUDPEcho(t, listenUDP(t))
	port := freePort(t)
	p := startProxy(t, "", []Mapping{{Proto: "udp", HostPort: port, Target: e.addr, Endpoint: "echo"}}, defaultOptions())

	a, b := dialUDP(t, port), dialUDP(t, port)
	for i := range 3 {
		for name, c := range map[string]*net.UDPConn{"a": a, "b": b} {
			msg := fmt.Sprintf("%s %d", name, i)
			got, err := udpRoundTrip(c, []byte(msg), 2*time.Second)
			require.NoError(t, err)
			require.Equal(t, msg, string(got), "each reply reaches its own client")
		}
	}
	require.Equal(t, 2, p.flows())
	require.Equal(t, 2, e.numPeers(), "one target-side socket per client")

	big := make([]byte, 60000)
	rand.Read(big)
	got, err := udpRoundTrip(a, big, 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, big, got)
}

func TestUDPIdleExpiry(t *testing.T) {
	e := serveUDPEcho(t, listenUDP(t))
	port := freePort(t)
	opts := defaultOptions()
	opts.udpIdle = time.Second
	p := startProxy(t, "", []Mapping{{Proto: "udp", HostPort: port, Target: e.addr}}, opts)

	c := dialUDP(t, port)
	_, err := udpRoundTrip(c, []byte("x"), 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, p.flows())
	// Activity keeps the flow: datagrams a quarter of the idle time apart
	// for longer than the idle time. The sleep is what is tested (time
	// passing on the socket deadlines the flow expires by, which no fake
	// clock drives), not a wait for an event; the margin (a datagram
	// 750 ms late) holds on a loaded machine.
	for range 6 {
		time.Sleep(opts.udpIdle / 4)
		_, err := udpRoundTrip(c, []byte("y"), 2*time.Second)
		require.NoError(t, err)
		require.Equal(t, 1, p.flows())
	}
	require.Equal(t, 1, e.numPeers(), "the same flow throughout")
	require.Eventually(t, func() bool { return p.flows() == 0 }, 5*time.Second, 20*time.Millisecond)
	// A new datagram makes a new flow (a new target-side socket).
	_, err = udpRoundTrip(c, []byte("z"), 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, 1, p.flows())
	require.Equal(t, 2, e.numPeers())
}

func TestUDPFlowLimit(t *testing.T) {
	e := serveUDPEcho(t, listenUDP(t))
	port := freePort(t)
	opts := defaultOptions()
	opts.maxFlows = 2
	p := startProxy(t, "", []Mapping{{Proto: "udp", HostPort: port, Target: e.addr}}, opts)

	a, b, c := dialUDP(t, port), dialUDP(t, port), dialUDP(t, port)
	for _, cl := range []*net.UDPConn{a, b} {
		_, err := udpRoundTrip(cl, []byte("in"), 2*time.Second)
		require.NoError(t, err)
	}
	_, err := udpRoundTrip(c, []byte("out"), 300*time.Millisecond)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "the third client gets no reply")
	require.Equal(t, 2, p.flows())
	require.Equal(t, uint64(1), p.droppedFlows())
	// Existing flows still work.
	got, err := udpRoundTrip(a, []byte("still"), 2*time.Second)
	require.NoError(t, err)
	require.Equal(t, "still", string(got))
}

func TestPortInUse(t *testing.T) {
	target := serveTCP(t, listenTCP(t), echo)
	free := freePort(t)
	busy, err := net.Listen("tcp", ":0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := uint16(busy.Addr().(*net.TCPAddr).Port)

	p, err := Start(t.Context(), "", []Mapping{
		{Proto: "tcp", HostPort: free, Target: target, Endpoint: "a"},
		{Proto: "tcp", HostPort: busyPort, Target: target, Endpoint: "b"},
	}, testLog(t))
	require.Nil(t, p)
	require.ErrorIs(t, err, syscall.EADDRINUSE)
	require.EqualError(t, err, fmt.Sprintf("publish %d/tcp: listen 0.0.0.0:%d in the current netns: address already in use", busyPort, busyPort))
	// What was opened before the failure was closed again.
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", free))
	require.NoError(t, err)
	l.Close()

	_, err = Start(t.Context(), "", []Mapping{{Proto: "sctp", HostPort: 1, Target: target}}, nil)
	require.ErrorContains(t, err, "publish 1/sctp: unsupported protocol")
}

func TestCloseUnblocksAndLeaksNothing(t *testing.T) {
	tcpTarget := serveTCP(t, listenTCP(t), echo)
	silent := serveTCP(t, listenTCP(t), func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	udpTarget := serveUDPEcho(t, listenUDP(t))
	tcpPort, silentPort, udpPort := freePort(t), freePort(t), freePort(t)
	before := runtime.NumGoroutine()

	p, err := Start(t.Context(), "", []Mapping{
		{Proto: "tcp", HostPort: tcpPort, Target: tcpTarget},
		{Proto: "tcp", HostPort: silentPort, Target: silent},
		{Proto: "udp", HostPort: udpPort, Target: udpTarget.addr},
	}, testLog(t))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	// An idle relayed TCP connection with a client blocked reading it.
	c := dialTCP(t, silentPort)
	_, err = c.Write([]byte("hi"))
	require.NoError(t, err)
	readDone := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(c)
		readDone <- err
	}()
	// A used TCP connection and a UDP flow.
	e := dialTCP(t, tcpPort)
	_, err = e.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(e, make([]byte, 1))
	require.NoError(t, err)
	u := dialUDP(t, udpPort)
	_, err = udpRoundTrip(u, []byte("u"), 2*time.Second)
	require.NoError(t, err)
	require.Greater(t, runtime.NumGoroutine(), before)

	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the client was not disconnected")
	}
	require.NoError(t, p.Close(), "Close twice is fine")

	// Nothing listens any more.
	_, err = net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort), time.Second)
	require.Error(t, err)

	c.Close()
	e.Close()
	u.Close()
	// Polled by hand, a condition with a deadline: require.Eventually
	// runs its condition on a goroutine of its own, which would count.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if runtime.NumGoroutine() > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d now:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
	}
}
