package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// The probes of a connectivity matrix: from a source namespace to an
// address, over ICMP echo, TCP (connect and a small transfer both ways) and
// UDP (a datagram and its echo), each answering whether the destination
// was reached and, for TCP, the source address the server saw.
// They return results instead of failing a test, so that many run at once
// from goroutines.

const (
	matrixTCPPort = 7071
	matrixUDPPort = 7072
	matrixPayload = 16 << 10 // characters a TCP probe carries each way, at least
)

// matrixServe runs the probes' servers in namespace ns, in both families:
// whoServer on matrixTCPPort, udpEcho on matrixUDPPort.
func matrixServe(t *testing.T, ns string) {
	t.Helper()
	for _, fam := range []string{"4", "6"} {
		var l net.Listener
		var pc net.PacketConn
		var err, uerr error
		inNetns(t, ns, func() {
			l, err = net.Listen("tcp"+fam, fmt.Sprintf(":%d", matrixTCPPort))
			pc, uerr = net.ListenPacket("udp"+fam, fmt.Sprintf(":%d", matrixUDPPort))
		})
		require.NoError(t, err, "TCP server in %s", ns)
		require.NoError(t, uerr, "UDP server in %s", ns)
		t.Cleanup(func() { l.Close(); pc.Close() })
		whoServer(l)
		go udpEcho(pc)
	}
}

// dialIn dials addr over network from inside namespace ns.
func dialIn(ns, network, addr string, wait time.Duration) (net.Conn, error) {
	h, err := nsthread.Open(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var c net.Conn
	err = nsthread.In(h, func() error {
		c, err = net.DialTimeout(network, addr, wait)
		return err
	})
	return c, err
}

// probeTCP connects from ns to whoServer at dst, sends a line of
// matrixPayload random characters, and returns the address the server saw
// once the line has come back behind it.
func probeTCP(ns, dst string, wait time.Duration) (string, error) {
	addr := net.JoinHostPort(dst, fmt.Sprint(matrixTCPPort))
	c, err := dialIn(ns, "tcp", addr, wait)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * wait)); err != nil {
		return "", err
	}
	line := rand.Text()
	for len(line) < matrixPayload {
		line += rand.Text()
	}
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	seen, back, _ := strings.Cut(strings.TrimSuffix(answer, "\n"), " ")
	if back != line {
		return "", fmt.Errorf("tcp %s: %d bytes back, not the %d sent", addr, len(back), len(line))
	}
	return seen, nil
}

// probeUDP sends a datagram from ns to udpEcho at dst, up to twice, and
// reports whether it came back.
func probeUDP(ns, dst string, wait time.Duration) error {
	addr := net.JoinHostPort(dst, fmt.Sprint(matrixUDPPort))
	c, err := dialIn(ns, "udp", addr, wait)
	if err != nil {
		return err
	}
	defer c.Close()
	nonce := []byte(rand.Text())
	buf := make([]byte, 2048)
	for range 2 {
		if _, err = c.Write(nonce); err != nil {
			return err
		}
		if err := c.SetReadDeadline(time.Now().Add(wait / 2)); err != nil {
			return err
		}
		var n int
		if n, err = c.Read(buf); err != nil {
			if isTimeout(err) {
				continue
			}
			return err
		}
		if bytes.Equal(buf[:n], nonce) {
			return nil
		}
	}
	return fmt.Errorf("udp %s: %w", addr, err)
}

// probeEcho sends ICMP (IPv4) or ICMPv6 echo requests from ns to dst, two
// at most, and reports whether dst answered one.
func probeEcho(ns, dst string, wait time.Duration) (bool, error) {
	to := netip.MustParseAddr(dst)
	if to.Is4() {
		r, err := echo(ns, dst, echoOpts{count: 2, interval: time.Millisecond, wait: wait / 2})
		if err != nil {
			return false, err
		}
		return r.received > 0, nil
	}
	h, err := nsthread.Open(ns)
	if err != nil {
		return false, err
	}
	defer h.Close()
	var c *icmp.PacketConn
	if err := nsthread.In(h, func() error {
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}); err != nil {
		return false, fmt.Errorf("echo6 from netns %s: %w", ns, err)
	}
	defer c.Close()
	id := int(echoIDs.Add(1) & 0xffff)
	buf := make([]byte, 1500)
	for seq := 1; seq <= 2; seq++ {
		req, err := (&icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("matrix")}}).Marshal(nil)
		if err != nil {
			return false, err
		}
		if _, err := c.WriteTo(req, &net.IPAddr{IP: to.AsSlice()}); err != nil {
			continue // no route: unanswered
		}
		if err := c.SetReadDeadline(time.Now().Add(wait / 2)); err != nil {
			return false, err
		}
		for {
			n, from, err := c.ReadFrom(buf)
			if isTimeout(err) {
				break
			}
			if err != nil {
				return false, err
			}
			m, err := icmp.ParseMessage(58, buf[:n])
			if err != nil || m.Type != ipv6.ICMPTypeEchoReply {
				continue
			}
			if b, ok := m.Body.(*icmp.Echo); ok && b.ID == id && b.Seq == seq && from.(*net.IPAddr).IP.Equal(to.AsSlice()) {
				return true, nil
			}
		}
	}
	return false, nil
}

// matrixProbe is one cell of a matrix for one protocol and family.
type matrixProbe struct {
	v6       bool
	proto    string // icmp, tcp, udp
	from, to string // node names
}

// matrixResult is what a probe found: reached, and for TCP the source
// address the server saw.
type matrixResult struct {
	ok   bool
	seen string
	err  string // why not, for the log
}

// String is what two builds must agree on.
func (r matrixResult) String() string {
	switch {
	case !r.ok:
		return "—"
	case r.seen != "":
		return "ok (server saw " + r.seen + ")"
	}
	return "ok"
}

// matrixTarget is a destination of a matrix.
type matrixTarget struct {
	name   string
	v4, v6 string
}

// runMatrix probes every (source, destination, protocol) of both families:
// sources maps a row's name to the namespace it probes from, targets are the
// columns in order. Probes run concurrently; those that fail are tried once
// more, with a longer wait, so that a loaded machine does not turn a
// reachable cell into an unreachable one.
func runMatrix(t *testing.T, sources map[string]string, targets []matrixTarget) map[matrixProbe]matrixResult {
	t.Helper()
	addr := map[string]matrixTarget{}
	for _, d := range targets {
		addr[d.name] = d
	}
	var probes []matrixProbe
	for from := range sources {
		for _, d := range targets {
			if d.name == from {
				continue
			}
			for _, v6 := range []bool{false, true} {
				for _, proto := range []string{"icmp", "tcp", "udp"} {
					probes = append(probes, matrixProbe{v6, proto, from, d.name})
				}
			}
		}
	}
	run := func(p matrixProbe, wait time.Duration) matrixResult {
		dst := addr[p.to].v4
		if p.v6 {
			dst = addr[p.to].v6
		}
		ns := sources[p.from]
		var r matrixResult
		var err error
		switch p.proto {
		case "icmp":
			r.ok, err = probeEcho(ns, dst, wait)
		case "tcp":
			r.seen, err = probeTCP(ns, dst, wait)
			r.ok = err == nil
		case "udp":
			err = probeUDP(ns, dst, wait)
			r.ok = err == nil
		}
		if err != nil {
			r.ok, r.err = false, err.Error()
		}
		return r
	}
	results := make(map[matrixProbe]matrixResult, len(probes))
	var mu sync.Mutex
	pass := func(todo []matrixProbe, wait time.Duration) {
		sem := make(chan struct{}, 32)
		var wg sync.WaitGroup
		for _, p := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				r := run(p, wait)
				mu.Lock()
				results[p] = r
				mu.Unlock()
				<-sem
			}()
		}
		wg.Wait()
	}
	pass(probes, 2*time.Second)
	var failed []matrixProbe
	for _, p := range probes {
		if !results[p].ok {
			failed = append(failed, p)
		}
	}
	pass(failed, 4*time.Second)
	return results
}

// matrixTable renders one family of a matrix: a row per source, a column per
// destination; a cell is ok when ICMP, TCP and UDP all got through, — when
// none did, else the initials of those that did (i, t, u).
func matrixTable(res map[matrixProbe]matrixResult, v6 bool, rows []string, targets []matrixTarget) string {
	w0, w := len("from\\to")+1, 0 // the first column's width, the others'
	for _, d := range targets {
		w = max(w, len(d.name)+2)
	}
	for _, r := range rows {
		w0 = max(w0, len(r)+1)
	}
	var b strings.Builder
	line := func(cells []string) {
		var l strings.Builder
		fmt.Fprintf(&l, "%-*s", w0, cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(&l, "%-*s", w, c)
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	cells := []string{"from\\to"}
	for _, d := range targets {
		cells = append(cells, d.name)
	}
	line(cells)
	for _, from := range rows {
		cells = []string{from}
		for _, d := range targets {
			cell := "·"
			if d.name != from {
				var got string
				for _, proto := range []string{"icmp", "tcp", "udp"} {
					if res[matrixProbe{v6, proto, from, d.name}].ok {
						got += proto[:1]
					}
				}
				switch got {
				case "itu":
					cell = "ok"
				case "":
					cell = "—"
				default:
					cell = got
				}
			}
			cells = append(cells, cell)
		}
		line(cells)
	}
	return b.String()
}

// matrixSeen lists, for one family, the TCP cells where the server saw
// another source address than the client's own (NAT), as "from → to: seen".
func matrixSeen(res map[matrixProbe]matrixResult, v6 bool, own map[string]matrixTarget) string {
	var lines []string
	for p, r := range res {
		if p.v6 != v6 || p.proto != "tcp" || !r.ok {
			continue
		}
		self := own[p.from].v4
		if v6 {
			self = own[p.from].v6
		}
		if r.seen != self {
			lines = append(lines, fmt.Sprintf("  %s → %s: server saw %s", p.from, p.to, r.seen))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// matrixDiff lists the probes on which two matrices disagree.
func matrixDiff(a, b map[matrixProbe]matrixResult, aName, bName string) []string {
	var out []string
	for p, ra := range a {
		if rb := b[p]; ra.String() != rb.String() {
			fam := "IPv4"
			if p.v6 {
				fam = "IPv6"
			}
			out = append(out, fmt.Sprintf("%s %s %s → %s: %s %s (%s), %s %s (%s)",
				fam, p.proto, p.from, p.to, aName, ra, ra.err, bName, rb, rb.err))
		}
	}
	sort.Strings(out)
	return out
}
