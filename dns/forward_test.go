package dns

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// bigUpstream serves UDP and TCP on one port: "big.example" has 10 TXT
// records (about 2.1 KB), truncated over UDP to 512 bytes whatever the
// client's EDNS size, with TC set.
type bigUpstream struct {
	addr          string
	udpHits, tcpH atomic.Int64
}

func startBigUpstream(t *testing.T) *bigUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	l, err := net.Listen("tcp4", pc.LocalAddr().String())
	require.NoError(t, err)
	u := &bigUpstream{addr: pc.LocalAddr().String()}
	handler := func(tcp bool) miekg.Handler {
		return miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
			if tcp {
				u.tcpH.Add(1)
			} else {
				u.udpHits.Add(1)
			}
			m := new(miekg.Msg)
			m.SetReply(r)
			for i := range 10 {
				m.Answer = append(m.Answer, &miekg.TXT{Hdr: miekg.RR_Header{Name: r.Question[0].Name, Rrtype: miekg.TypeTXT, Class: miekg.ClassINET, Ttl: 30},
					Txt: []string{strings.Repeat(string(rune('a'+i)), 200)}})
			}
			if !tcp {
				m.Truncate(miekg.MinMsgSize)
			}
			_ = w.WriteMsg(m)
		})
	}
	started := make(chan struct{}, 2)
	udp := &miekg.Server{PacketConn: pc, Handler: handler(false), NotifyStartedFunc: func() { started <- struct{}{} }}
	tcp := &miekg.Server{Listener: l, Handler: handler(true), NotifyStartedFunc: func() { started <- struct{}{} }}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	<-started
	<-started
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return u
}

// forwardOnce forwards a TXT query for big.example, over TCP or not, with
// an EDNS size or none, and returns the reply's message and its size.
func forwardOnce(t *testing.T, s *Server, tcp bool, edns uint16) (*miekg.Msg, int) {
	t.Helper()
	q := new(miekg.Msg)
	q.SetQuestion("big.example.", miekg.TypeTXT)
	if edns != 0 {
		q.SetEdns0(edns, false)
	}
	b, err := q.Pack()
	require.NoError(t, err)
	ch := make(chan []byte, 1)
	require.True(t, s.query("front", [4]byte{172, 20, 0, 10}, 40000, b, tcp, func(r []byte) { ch <- append([]byte(nil), r...) }))
	r := <-ch
	m := new(miekg.Msg)
	require.NoError(t, m.Unpack(r))
	return m, len(r)
}

func TestForwardOverTCPWhatCameOverTCP(t *testing.T) {
	up := startBigUpstream(t)
	s := New(testPlan(t, up.addr), &net.Dialer{}, nil)
	defer s.Close()
	m, _ := forwardOnce(t, s, true, 0)
	require.False(t, m.Truncated)
	require.Len(t, m.Answer, 10)
	require.EqualValues(t, 1, up.tcpH.Load())
	require.Zero(t, up.udpHits.Load())
}

func TestTruncatedUpstreamAskedAgainOverTCP(t *testing.T) {
	up := startBigUpstream(t)
	s := New(testPlan(t, up.addr), &net.Dialer{}, nil)
	defer s.Close()

	// The client takes 4096 bytes: upstream's 512 are truncated, uswitch
	// asks again over TCP and passes the whole answer on.
	m, _ := forwardOnce(t, s, false, 4096)
	require.False(t, m.Truncated)
	require.Len(t, m.Answer, 10)
	require.EqualValues(t, 1, up.udpHits.Load())
	require.EqualValues(t, 1, up.tcpH.Load(), "asked again over TCP")
	require.EqualValues(t, 1, s.Stats().Truncated)

	// A client of 1232 bytes gets what fits, TC set: more than upstream's
	// datagram carried.
	m, n := forwardOnce(t, s, false, 1232)
	require.True(t, m.Truncated)
	require.LessOrEqual(t, n, 1232)
	require.Greater(t, len(m.Answer), 2)

	// A client without EDNS gets 512 bytes with TC, and asks over TCP.
	m, n = forwardOnce(t, s, false, 0)
	require.True(t, m.Truncated)
	require.LessOrEqual(t, n, 512)
	m, _ = forwardOnce(t, s, true, 0)
	require.False(t, m.Truncated)
	require.Len(t, m.Answer, 10)
}
