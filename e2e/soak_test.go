package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// soakConfig: two open networks (n1 with a, b, c; n2 with d, e) and an
// uplink whose host side is in the test's own namespace NAME-host.
func soakConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.253.0.2/30"
host_address = "10.253.0.1/30"
netns = "%[1]s-host"

[[network]]
name = "n1"
subnet = "10.88.1.0/24"
isolate = false

[[network]]
name = "n2"
subnet = "10.88.2.0/24"
isolate = false

[[endpoint]]
name = "%[1]s-a"
network = "n1"

[[endpoint]]
name = "%[1]s-b"
network = "n1"

[[endpoint]]
name = "%[1]s-c"
network = "n1"
link = "veth"

[[endpoint]]
name = "%[1]s-d"
network = "n2"

[[endpoint]]
name = "%[1]s-e"
network = "n2"
`, name)
}

// soakDuration is 60s, or what USWITCH_SOAK says (a Go duration).
func soakDuration(t *testing.T) time.Duration {
	d := 60 * time.Second
	if v := os.Getenv("USWITCH_SOAK"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err, "USWITCH_SOAK")
	}
	return d
}

// hashServer accepts TCP connections and answers each with the SHA-256 of
// everything the client sent before closing its side.
func hashServer(l net.Listener) {
	acceptEach(l, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(h, c); err == nil {
			c.Write(h.Sum(nil))
		}
	})
}

// acceptEach serves every connection l accepts with serve, on a goroutine
// of its own, and closes it after; it returns when l is closed.
func acceptEach(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

// udpEcho answers every datagram with the same bytes.
func udpEcho(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// transfer dials addr from ns, sends size random bytes and checks the
// hash the server returns.
func transfer(t *testing.T, ns, addr string, size int) error {
	var c net.Conn
	var err error
	inNetns(t, ns, func() {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(context.Background(), "tcp4", addr)
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read hash: %w", err)
	}
	if !bytes.Equal(got, want[:]) {
		return fmt.Errorf("%d bytes to %s: hash mismatch", size, addr)
	}
	return nil
}

// controlClient talks HTTP to the instance's control socket.
func controlClient(name string) *http.Client {
	sock := "/run/uswitch/" + name + ".sock"
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// metric reads an unlabelled metric from /metrics.
func metric(c *http.Client, name string) (float64, error) {
	resp, err := c.Get("http://uswitch/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// goroutines reads go_goroutines from /metrics.
func goroutines(c *http.Client) (int, error) {
	f, err := metric(c, "go_goroutines")
	return int(f), err
}

type soakSample struct {
	at         time.Duration
	goroutines int
	rssKiB     int
	conns      int // uswitch_conntrack_entries
}

// TestSoakMixedTraffic runs TCP transfers (same network, across networks,
// to the host through the masquerading uplink), UDP request/response and
// ping in loops for USWITCH_SOAK (default 60s), then checks: every TCP
// byte arrived intact, no error was logged, goroutines did not grow and
// RSS grew no more than the connection table explains between the first
// and the last 10 s, and each endpoint's switch
// port received at least the TCP payload its endpoint sent.
func TestSoakMixedTraffic(t *testing.T) {
	needRoot(t)
	dur := soakDuration(t)
	name := prefix("sk")
	in := start(t, name, writeConfig(t, soakConfig(name)))
	a, b, c, d, e, host := name+"-a", name+"-b", name+"-c", name+"-d", name+"-e", name+"-host"
	const bIP, cIP, dIP, eIP, hostIP = "10.88.1.3", "10.88.1.4", "10.88.2.2", "10.88.2.3", "10.253.0.1"
	ping(t, a, bIP)
	ping(t, c, dIP)
	ping(t, e, hostIP)

	for _, srv := range []struct{ ns, addr string }{{b, bIP + ":7000"}, {e, eIP + ":7000"}, {host, hostIP + ":7000"}} {
		go hashServer(listen(t, srv.ns, srv.addr))
		var pc net.PacketConn
		var err error
		inNetns(t, srv.ns, func() { pc, err = net.ListenPacket("udp4", strings.Replace(srv.addr, ":7000", ":7001", 1)) })
		require.NoError(t, err)
		t.Cleanup(func() { pc.Close() })
		go udpEcho(pc)
	}

	var (
		mu     sync.Mutex
		errs   []string
		sentBy = map[string]*atomic.Int64{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	for _, ns := range []string{a, b, c, d, e} {
		sentBy[ns] = &atomic.Int64{}
	}
	var transfers, udpSent, udpAnswered, pingRounds atomic.Int64
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	loop := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				fn()
			}
		}()
	}

	// TCP: within n1, within n2, n1 -> n2 (routed), n2 -> n1, and out to
	// the host from both networks (masqueraded).
	for _, p := range []struct{ from, to string }{
		{a, bIP + ":7000"}, {d, eIP + ":7000"}, {c, eIP + ":7000"}, {d, bIP + ":7000"},
		{a, hostIP + ":7000"}, {e, hostIP + ":7000"},
	} {
		loop(func() {
			size := 16<<10 + mrand.IntN(512<<10)
			if err := transfer(t, p.from, p.to, size); err != nil {
				fail("tcp %s -> %s: %v", p.from, p.to, err)
				time.Sleep(100 * time.Millisecond)
				return
			}
			sentBy[p.from].Add(int64(size))
			transfers.Add(1)
		})
	}
	// UDP request/response: c -> b (same network), a -> host, d -> b (routed).
	for _, p := range []struct{ from, to string }{{c, bIP + ":7001"}, {a, hostIP + ":7001"}, {d, bIP + ":7001"}} {
		var conn net.Conn
		var err error
		inNetns(t, p.from, func() { conn, err = net.Dial("udp4", p.to) })
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		loop(func() {
			req := fmt.Appendf(nil, "%s seq %d", p.from, udpSent.Add(1))
			conn.SetDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write(req); err != nil {
				fail("udp %s -> %s: %v", p.from, p.to, err)
				return
			}
			buf := make([]byte, 2048)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return // lost: counted by udpAnswered staying behind
				}
				if bytes.Equal(buf[:n], req) {
					udpAnswered.Add(1)
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		})
	}
	// ICMP: b -> d (routed), e -> host (through NAT).
	for _, p := range []struct{ from, to string }{{b, dIP}, {e, hostIP}} {
		loop(func() {
			r, err := echo(p.from, p.to, echoOpts{count: 5})
			pingRounds.Add(1)
			if err != nil {
				fail("ping %s -> %s: %v", p.from, p.to, err)
			} else if r.loss() != 0 {
				fail("ping %s -> %s:\n%s", p.from, p.to, r)
			}
		})
	}

	// Sample goroutines and RSS every second.
	cc := controlClient(name)
	pid := in.cmd.Process.Pid
	var samples []soakSample
	t0 := time.Now()
	sample := func() {
		n, err := goroutines(cc)
		require.NoError(t, err)
		conns, err := metric(cc, "uswitch_conntrack_entries")
		require.NoError(t, err)
		samples = append(samples, soakSample{at: time.Since(t0), goroutines: n, rssKiB: rssKiB(t, pid), conns: int(conns)})
	}
	for time.Now().Before(deadline) {
		sample()
		time.Sleep(time.Second)
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // let the last frames be counted
	sample()

	// First and last 10 s (they overlap when the soak is shorter than 20 s).
	window := 10 * time.Second
	var firstG, lastG, firstR, lastR, firstC, lastC int
	for _, s := range samples {
		if s.at <= window {
			firstG, firstR, firstC = max(firstG, s.goroutines), max(firstR, s.rssKiB), max(firstC, s.conns)
		}
		if s.at >= samples[len(samples)-1].at-window {
			lastG, lastR, lastC = max(lastG, s.goroutines), max(lastR, s.rssKiB), max(lastC, s.conns)
		}
	}
	t.Logf("soak %v: %d TCP transfers (bytes sent: a %d, c %d, d %d, e %d), UDP %d/%d answered, %d ping rounds",
		dur, transfers.Load(), sentBy[a].Load(), sentBy[c].Load(), sentBy[d].Load(), sentBy[e].Load(),
		udpAnswered.Load(), udpSent.Load(), pingRounds.Load())
	t.Logf("goroutines: max %d in the first 10s, %d in the last; RSS: max %d KiB in the first 10s, %d KiB in the last; connections: max %d in the first 10s, %d in the last",
		firstG, lastG, firstR, lastR, firstC, lastC)

	require.Empty(t, errs, "errors during the soak")
	require.Positive(t, transfers.Load())
	require.Positive(t, pingRounds.Load())
	// UDP has no retransmission: a loss now and then is allowed, 1% is not.
	require.GreaterOrEqual(t, udpAnswered.Load()*100, udpSent.Load()*99, "UDP answered %d of %d", udpAnswered.Load(), udpSent.Load())
	require.NotContains(t, in.stderr.String(), "level=ERROR", in.stderr.String())
	// Slack: a few goroutines for control requests in flight. RSS grows
	// with the connection table, which grows for the whole minute
	// (finished TCP connections stay in TIME_WAIT for 120 s): each live
	// connection may cost connKiB (measured under the race detector, with
	// its shadow memory and the GC's headroom: 3.2 KiB), and anything else
	// 64 MiB at most between the first and the last 10 s.
	const goroutineSlack, rssSlackKiB, connKiB = 5, 64 << 10, 4
	require.LessOrEqual(t, lastG, firstG+goroutineSlack, "goroutines grew")
	require.LessOrEqual(t, lastR, firstR+rssSlackKiB+max(lastC-firstC, 0)*connKiB, "RSS grew more than the connection table explains")

	rx := map[string]uint64{}
	for _, p := range in.ports(t) {
		rx[p.Name] = p.RxBytes
	}
	for ns, sent := range sentBy {
		require.GreaterOrEqual(t, rx[ns], uint64(sent.Load()), "port %s received fewer bytes than its endpoint sent as TCP payload", ns)
	}
	// The hosts' servers received what a and e sent them through the uplink.
	require.Positive(t, rx["uplink"])
}
