package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/uswitch-dev/uswitch/nsthread"
)

// echoOpts are the knobs of one round of ICMP echo requests, named after
// ping's options.
type echoOpts struct {
	count    int           // -c: requests to send (default 1)
	interval time.Duration // -i: between requests (default 200ms)
	wait     time.Duration // -W: how long to wait for each reply (default 2s)
	ttl      int           // -t: TTL of the requests (0: the namespace's default)
	source   string        // -I: source address (the socket is bound to it)
}

// icmpError is an ICMP error message that quoted one of our requests.
type icmpError struct {
	from string
	typ  ipv4.ICMPType
	code int
	seq  int
}

// echoResult is what a round of echo requests got back, like ping reports it.
type echoResult struct {
	sent     int
	received int
	ttls     []int       // the TTL of each reply, in order
	errors   []icmpError // ICMP errors quoting our requests
	log      strings.Builder
}

// loss is the share of requests left unanswered, in percent.
func (r *echoResult) loss() int {
	if r.sent == 0 {
		return 100
	}
	return (r.sent - r.received) * 100 / r.sent
}

// String is ping's output: a line per reply or error, then the summary.
func (r *echoResult) String() string {
	return fmt.Sprintf("%s%d packets transmitted, %d received, %d%% packet loss\n", r.log.String(), r.sent, r.received, r.loss())
}

// echoIDs hands each round its own ICMP identifier: a raw socket sees every
// ICMP message of its namespace, including the replies to other rounds.
var echoIDs atomic.Uint32

func init() { echoIDs.Store(uint32(time.Now().UnixNano())) }

// echo sends ICMP echo requests from inside namespace ns to dst with a raw
// socket opened on a thread switched into ns, and collects the replies and
// the ICMP errors that quote the requests. The error is for what keeps the
// probe from running at all (no namespace, no socket); a request the kernel
// refuses to send (no route) counts as lost and is logged.
func echo(ns, dst string, o echoOpts) (*echoResult, error) {
	if o.count == 0 {
		o.count = 1
	}
	if o.interval == 0 {
		o.interval = 200 * time.Millisecond
	}
	if o.wait == 0 {
		o.wait = 2 * time.Second
	}
	to := net.ParseIP(dst).To4()
	if to == nil {
		return nil, fmt.Errorf("echo to %q: not an IPv4 address", dst)
	}
	h, err := nsthread.Open(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var c *icmp.PacketConn
	err = nsthread.In(h, func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", o.source) // raw: root has CAP_NET_RAW
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("echo from netns %s: %w", ns, err)
	}
	defer c.Close()
	pc := c.IPv4PacketConn()
	if o.ttl != 0 {
		if err := pc.SetTTL(o.ttl); err != nil {
			return nil, fmt.Errorf("echo from netns %s: set TTL %d: %w", ns, o.ttl, err)
		}
	}
	if err := pc.SetControlMessage(ipv4.FlagTTL, true); err != nil {
		return nil, fmt.Errorf("echo from netns %s: ask for the TTL of replies: %w", ns, err)
	}

	id := int(echoIDs.Add(1) & 0xffff)
	r := &echoResult{}
	buf := make([]byte, 1500)
	for seq := 1; seq <= o.count; seq++ {
		if seq > 1 {
			time.Sleep(o.interval)
		}
		payload := fmt.Appendf(nil, "uswitch e2e echo %d/%d", id, seq)
		req, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: payload}}).Marshal(nil)
		if err != nil {
			return nil, err
		}
		r.sent++
		t0 := time.Now()
		if _, err := pc.WriteTo(req, nil, &net.IPAddr{IP: to}); err != nil {
			fmt.Fprintf(&r.log, "icmp_seq=%d send: %v\n", seq, err)
			continue
		}
		deadline := t0.Add(o.wait)
		for {
			if err := pc.SetReadDeadline(deadline); err != nil {
				return nil, err
			}
			n, cm, from, err := pc.ReadFrom(buf)
			if isTimeout(err) {
				fmt.Fprintf(&r.log, "icmp_seq=%d no answer within %v\n", seq, o.wait)
				break
			}
			if err != nil {
				return nil, fmt.Errorf("echo from netns %s: read: %w", ns, err)
			}
			m, err := icmp.ParseMessage(1, buf[:n])
			if err != nil {
				continue // not ours to judge
			}
			src := from.(*net.IPAddr).IP.String()
			switch b := m.Body.(type) {
			case *icmp.Echo:
				if m.Type != ipv4.ICMPTypeEchoReply || b.ID != id || b.Seq != seq || src != dst || !bytes.Equal(b.Data, payload) {
					continue
				}
				ttl := -1
				if cm != nil {
					ttl = cm.TTL
				}
				r.received++
				r.ttls = append(r.ttls, ttl)
				fmt.Fprintf(&r.log, "%d bytes from %s: icmp_seq=%d ttl=%d time=%.3f ms\n",
					n, src, seq, ttl, float64(time.Since(t0).Microseconds())/1000)
			case *icmp.TimeExceeded:
				if !quotesEcho(b.Data, to, id, seq) {
					continue
				}
				r.errors = append(r.errors, icmpError{from: src, typ: m.Type.(ipv4.ICMPType), code: m.Code, seq: seq})
				fmt.Fprintf(&r.log, "From %s icmp_seq=%d Time to live exceeded\n", src, seq)
			case *icmp.DstUnreach:
				if !quotesEcho(b.Data, to, id, seq) {
					continue
				}
				r.errors = append(r.errors, icmpError{from: src, typ: m.Type.(ipv4.ICMPType), code: m.Code, seq: seq})
				fmt.Fprintf(&r.log, "From %s icmp_seq=%d Destination unreachable (code %d)\n", src, seq, m.Code)
			default:
				continue
			}
			break
		}
	}
	return r, nil
}

// isTimeout reports whether err is a passed read deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// quotesEcho reports whether data, the original datagram quoted by an ICMP
// error (IPv4 header and at least 8 bytes), is our echo request seq to dst.
func quotesEcho(data []byte, dst net.IP, id, seq int) bool {
	if len(data) < ipv4.HeaderLen {
		return false
	}
	hl := int(data[0]&0x0f) * 4
	if hl < ipv4.HeaderLen || len(data) < hl+8 || data[9] != 1 || !net.IP(data[16:20]).Equal(dst) {
		return false
	}
	q := data[hl:]
	return q[0] == byte(ipv4.ICMPTypeEcho) && int(q[4])<<8|int(q[5]) == id && int(q[6])<<8|int(q[7]) == seq
}

// mustEcho runs echo and fails the test if the probe cannot run.
func mustEcho(t *testing.T, ns, dst string, o echoOpts) *echoResult {
	t.Helper()
	r, err := echo(ns, dst, o)
	require.NoError(t, err)
	return r
}

// ping sends two echo requests from ns to ip and fails the test unless
// both are answered, by ip.
func ping(t *testing.T, ns, ip string) {
	t.Helper()
	r := mustEcho(t, ns, ip, echoOpts{count: 2})
	require.Zero(t, r.loss(), "ping %s from %s:\n%s", ip, ns, r)
}

// noPing fails the test if an echo request from ns to ip is answered.
func noPing(t *testing.T, ns, ip string) {
	t.Helper()
	r := mustEcho(t, ns, ip, echoOpts{count: 1, wait: time.Second})
	require.Equal(t, 1, r.sent)
	require.Zero(t, r.received, "ping %s from %s should go unanswered:\n%s", ip, ns, r)
}
