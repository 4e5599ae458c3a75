package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// fwdUpstream is a DNS server in the uplink's namespace on 127.0.0.1:5534,
// UDP and TCP: upstream.example and the single label "solo" have an A
// record (answered after delay, so that queries pile up), big.example 10
// TXT records that a datagram truncates to 512 bytes; the rest NXDOMAIN.
type fwdUpstream struct {
	udp, tcp atomic.Int64
}

func startFwdUpstream(t *testing.T, ns string, delay time.Duration) *fwdUpstream {
	t.Helper()
	u := &fwdUpstream{}
	var pc net.PacketConn
	var l net.Listener
	var err1, err2 error
	inNetns(t, ns, func() {
		pc, err1 = net.ListenPacket("udp4", "127.0.0.1:5534")
		l, err2 = net.Listen("tcp4", "127.0.0.1:5534")
	})
	require.NoError(t, err1)
	require.NoError(t, err2)
	handler := func(tcp bool) miekg.Handler {
		return miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
			if tcp {
				u.tcp.Add(1)
			} else {
				u.udp.Add(1)
			}
			m := new(miekg.Msg)
			m.SetReply(r)
			q := r.Question[0]
			hdr := miekg.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: miekg.ClassINET, Ttl: 30}
			switch {
			case (q.Name == "upstream.example." || q.Name == "solo.") && q.Qtype == miekg.TypeA:
				time.Sleep(delay)
				m.Answer = append(m.Answer, &miekg.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 54)})
			case q.Name == "upstream.example." || q.Name == "solo.":
			case q.Name == "big.example." && q.Qtype == miekg.TypeTXT:
				for i := range 10 {
					m.Answer = append(m.Answer, &miekg.TXT{Hdr: hdr, Txt: []string{strings.Repeat(string(rune('a'+i)), 200)}})
				}
				if !tcp {
					m.Truncate(miekg.MinMsgSize)
				}
			default:
				m.Rcode = miekg.RcodeNameError
			}
			_ = w.WriteMsg(m)
		})
	}
	udp := &miekg.Server{PacketConn: pc, Handler: handler(false)}
	tcp := &miekg.Server{Listener: l, Handler: handler(true)}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown(); pc.Close(); l.Close() })
	return u
}

func TestDNSForwardingUnderLoadAndOverTCP(t *testing.T) {
	needRoot(t)
	name := prefix("dnsfw")
	start(t, name, writeConfig(t, dnsConfig(name, "127.0.0.1:5534")))
	up := startFwdUpstream(t, name+"-host", 20*time.Millisecond)
	a := name + "-a"
	gw := "10.90.0.1:53"

	t.Run("200 clients, 10 lookups each, all answered", func(t *testing.T) {
		conns := make([]net.Conn, 200)
		inNetns(t, a, func() {
			for i := range conns {
				c, err := net.Dial("udp4", gw)
				require.NoError(t, err)
				conns[i] = c
			}
		})
		var failed atomic.Int64
		var first atomic.Pointer[string]
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				mc := &miekg.Conn{Conn: c}
				for range 10 {
					q := new(miekg.Msg)
					q.SetQuestion("upstream.example.", miekg.TypeA)
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					r, err := func() (*miekg.Msg, error) {
						if err := mc.WriteMsg(q); err != nil {
							return nil, err
						}
						return mc.ReadMsg()
					}()
					if err != nil || r.Rcode != miekg.RcodeSuccess || len(r.Answer) != 1 {
						failed.Add(1)
						what := fmt.Sprintf("err %v, reply %v", err, r)
						first.CompareAndSwap(nil, &what)
					}
				}
			}()
		}
		wg.Wait()
		if n := failed.Load(); n > 0 {
			t.Fatalf("%d of 2000 lookups failed; first: %s", n, *first.Load())
		}
	})
	t.Run("a query over TCP is forwarded over TCP, whole", func(t *testing.T) {
		before := up.udp.Load()
		q := new(miekg.Msg)
		q.SetQuestion("big.example.", miekg.TypeTXT)
		var r *miekg.Msg
		var err error
		inNetns(t, a, func() {
			c := &miekg.Client{Net: "tcp", Timeout: 5 * time.Second}
			r, _, err = c.Exchange(q, gw)
		})
		require.NoError(t, err)
		require.False(t, r.Truncated)
		require.Len(t, r.Answer, 10)
		require.Equal(t, before, up.udp.Load(), "not asked over UDP")
		require.Positive(t, up.tcp.Load())
	})
	t.Run("a truncated answer is asked again over TCP", func(t *testing.T) {
		q := new(miekg.Msg)
		q.SetQuestion("big.example.", miekg.TypeTXT)
		q.SetEdns0(4096, false)
		tcpBefore := up.tcp.Load()
		var r *miekg.Msg
		var err error
		inNetns(t, a, func() {
			c := &miekg.Client{Net: "udp", UDPSize: 4096, Timeout: 5 * time.Second}
			r, _, err = c.Exchange(q, gw)
		})
		require.NoError(t, err)
		require.False(t, r.Truncated)
		require.Len(t, r.Answer, 10, "the whole answer, fragmented to the client")
		require.Equal(t, tcpBefore+1, up.tcp.Load())
	})
	t.Run("several queries on one TCP connection", func(t *testing.T) {
		var c net.Conn
		var err error
		inNetns(t, a, func() { c, err = net.Dial("tcp4", gw) })
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		mc := &miekg.Conn{Conn: c}
		for _, n := range []string{name + "-b.", "bravo.", "upstream.example.", "alpha."} {
			q := new(miekg.Msg)
			q.SetQuestion(n, miekg.TypeA)
			require.NoError(t, mc.WriteMsg(q))
			r, err := mc.ReadMsg()
			require.NoError(t, err, n)
			require.Equal(t, q.Id, r.Id)
			require.Len(t, r.Answer, 1, n)
		}
	})
	t.Run("unknown single labels go upstream", func(t *testing.T) {
		resolves(t, a, "solo", "192.0.2.54")
		resolves(t, a, "bravo", "10.90.0.11") // local names stay local
		doesNotResolve(t, a, name+"-c")       // as do names on other networks
	})
}
