package dns

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

const testConfig = `name = "t"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[network]]
name = "back"
subnet = "172.21.0.0/24"

[[network]]
name = "quiet"
subnet = "172.22.0.0/24"
dns = false

[[endpoint]]
name = "web"
network = "front"
ip = "172.20.0.10"
aliases = ["www", "site"]

[[endpoint]]
name = "api"
aliases = ["service"]
  [[endpoint.interface]]
  network = "front"
  ip = "172.20.0.5"
  [[endpoint.interface]]
  network = "back"
  ip = "172.21.0.5"

[[endpoint]]
name = "db"
network = "back"
ip = "172.21.0.20"
aliases = ["database"]

[[endpoint]]
name = "shell"
mode = "container:web"

[[endpoint]]
name = "hermit"
network = "quiet"
`

func testPlan(t *testing.T, upstream ...string) *config.Plan {
	t.Helper()
	p, err := config.Parse([]byte(testConfig), "net.toml")
	require.NoError(t, err)
	p.DNS.Upstream = upstream
	return p
}

func query(t *testing.T, name string, qtype uint16) []byte {
	t.Helper()
	m := new(miekg.Msg)
	m.SetQuestion(miekg.Fqdn(name), qtype)
	m.Id = 0x1234
	b, err := m.Pack()
	require.NoError(t, err)
	return b
}

func unpack(t *testing.T, b []byte) *miekg.Msg {
	t.Helper()
	m := new(miekg.Msg)
	require.NoError(t, m.Unpack(b))
	return m
}

// ask answers a query locally and returns the parsed reply.
func ask(t *testing.T, s *Server, network, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	b, ok := s.Answer(network, query(t, name, qtype))
	require.True(t, ok, "no local answer for %s on %s", name, network)
	m := unpack(t, b)
	require.True(t, m.Response)
	require.EqualValues(t, 0x1234, m.Id)
	require.True(t, m.RecursionDesired, "RD is copied")
	require.Len(t, m.Question, 1)
	return m
}

func aRecords(t *testing.T, m *miekg.Msg) []string {
	t.Helper()
	var out []string
	for _, rr := range m.Answer {
		a, ok := rr.(*miekg.A)
		require.True(t, ok, "%v", rr)
		require.EqualValues(t, TTL, a.Hdr.Ttl)
		out = append(out, a.A.String())
	}
	return out
}

func TestLocalNames(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	for _, c := range []struct{ network, name, want string }{
		{"front", "web", "172.20.0.10"},
		{"front", "www", "172.20.0.10"},
		{"front", "SITE", "172.20.0.10"},  // aliases are case-insensitive
		{"front", "WEB.", "172.20.0.10"},  // and so are names
		{"front", "shell", "172.20.0.10"}, // container mode shares web's address
		{"front", "api", "172.20.0.5"},    // each network sees its own address
		{"back", "api", "172.21.0.5"},
		{"back", "service", "172.21.0.5"},
		{"back", "database", "172.21.0.20"},
		{"front", "web.front", "172.20.0.10"}, // <name>.<network>, like Docker
	} {
		m := ask(t, s, c.network, c.name, miekg.TypeA)
		require.Equal(t, miekg.RcodeSuccess, m.Rcode, "%s on %s", c.name, c.network)
		require.True(t, m.Authoritative)
		require.Equal(t, []string{c.want}, aRecords(t, m), "%s on %s", c.name, c.network)
	}
	require.EqualValues(t, 10, s.Stats().Answered)
}

// host.uswitch.internal is the asking network's gateway, whose ports are
// the host's.
func TestHostName(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	for network, want := range map[string]string{"front": "172.20.0.1", "back": "172.21.0.1"} {
		for _, name := range []string{HostName, "HOST.uswitch.internal."} {
			m := ask(t, s, network, name, miekg.TypeA)
			require.Equal(t, miekg.RcodeSuccess, m.Rcode)
			require.Equal(t, []string{want}, aRecords(t, m), "%s on %s", name, network)
		}
		m := ask(t, s, network, HostName, miekg.TypeAAAA)
		require.Equal(t, miekg.RcodeSuccess, m.Rcode)
		require.Empty(t, m.Answer, "NOERROR, no data")
	}
}

func TestNXDomain(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	for _, c := range []struct{ network, name string }{
		{"front", "nosuch"},       // unknown single label
		{"front", "db"},           // only on back: invisible from front
		{"front", "database"},     // an alias on back
		{"back", "web"},           // and the other way round
		{"back", "www"},           //
		{"back", "shell"},         // web's container-mode partner is not on back
		{"front", "nosuch.front"}, // unknown name in the network's zone
		{"front", "db.front"},
	} {
		m := ask(t, s, c.network, c.name, miekg.TypeA)
		require.Equal(t, miekg.RcodeNameError, m.Rcode, "%s on %s", c.name, c.network)
		require.Empty(t, m.Answer)
	}
	require.EqualValues(t, 8, s.Stats().NXDomain)
}

func TestOtherTypesOfLocalNames(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	for _, qt := range []uint16{miekg.TypeAAAA, miekg.TypeMX, miekg.TypeTXT} {
		m := ask(t, s, "front", "web", qt)
		require.Equal(t, miekg.RcodeSuccess, m.Rcode)
		require.Empty(t, m.Answer, "NOERROR, no data")
	}
	m := ask(t, s, "front", "web", miekg.TypeANY)
	require.Equal(t, []string{"172.20.0.10"}, aRecords(t, m))
}

func TestPTR(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	m := ask(t, s, "front", "10.0.20.172.in-addr.arpa", miekg.TypePTR)
	require.Equal(t, miekg.RcodeSuccess, m.Rcode)
	require.Len(t, m.Answer, 1)
	ptr := m.Answer[0].(*miekg.PTR)
	require.Equal(t, "web.", ptr.Ptr)
	require.EqualValues(t, TTL, ptr.Hdr.Ttl)

	m = ask(t, s, "back", "5.0.21.172.in-addr.arpa", miekg.TypePTR)
	require.Equal(t, "api.", m.Answer[0].(*miekg.PTR).Ptr)

	// An address of the subnet nobody holds: NXDOMAIN.
	m = ask(t, s, "front", "99.0.20.172.in-addr.arpa", miekg.TypePTR)
	require.Equal(t, miekg.RcodeNameError, m.Rcode)
	// Another network's address is not this zone's: REFUSED without upstream.
	m = ask(t, s, "front", "20.0.21.172.in-addr.arpa", miekg.TypePTR)
	require.Equal(t, miekg.RcodeRefused, m.Rcode)
}

func TestReverseParse(t *testing.T) {
	a, ok := reverse("4.3.2.1.in-addr.arpa")
	require.True(t, ok)
	require.Equal(t, netip.MustParseAddr("1.2.3.4"), a)
	for _, bad := range []string{"3.2.1.in-addr.arpa", "256.3.2.1.in-addr.arpa", "04.3.2.1.in-addr.arpa", "a.3.2.1.in-addr.arpa", "4..2.1.in-addr.arpa", "in-addr.arpa", "4.3.2.1.ip6.arpa"} {
		_, ok := reverse(bad)
		require.False(t, ok, bad)
	}
}

func TestRefusedWithoutUpstream(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	m := ask(t, s, "front", "example.com", miekg.TypeA)
	require.Equal(t, miekg.RcodeRefused, m.Rcode)
	require.False(t, m.RecursionAvailable)
	m = ask(t, s, "front", ".", miekg.TypeNS)
	require.Equal(t, miekg.RcodeRefused, m.Rcode)

	// Query answers REFUSED at once too, before it returns.
	var got []byte
	require.True(t, s.Query("front", [4]byte{172, 20, 0, 10}, 5353, query(t, "example.com", miekg.TypeA), func(b []byte) { got = append([]byte(nil), b...) }))
	require.NotNil(t, got)
	require.Equal(t, miekg.RcodeRefused, unpack(t, got).Rcode)
	require.EqualValues(t, 3, s.Stats().Refused)
}

func TestMalformedQueriesAreDropped(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	resp := new(miekg.Msg)
	resp.SetQuestion("web.", miekg.TypeA)
	resp.Response = true
	rb, err := resp.Pack()
	require.NoError(t, err)
	good := query(t, "web", miekg.TypeA)
	for i, q := range [][]byte{nil, {1, 2, 3}, good[:11], good[:len(good)-3], rb} {
		_, ok := s.Answer("front", q)
		require.False(t, ok, "case %d", i)
		called := false
		require.True(t, s.Query("front", [4]byte{}, 1, q, func([]byte) { called = true }))
		require.False(t, called, "case %d", i)
	}
	require.EqualValues(t, 10, s.Stats().Malformed)
	require.Zero(t, s.Stats().Queries)
}

func TestNotAStandardQuery(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	m := new(miekg.Msg)
	m.SetQuestion("web.", miekg.TypeA)
	m.Opcode = miekg.OpcodeStatus
	b, _ := m.Pack()
	r, ok := s.Answer("front", b)
	require.True(t, ok)
	require.Equal(t, miekg.RcodeNotImplemented, unpack(t, r).Rcode)

	m = new(miekg.Msg)
	m.Question = []miekg.Question{{Name: "web.", Qtype: miekg.TypeA, Qclass: miekg.ClassINET}, {Name: "www.", Qtype: miekg.TypeA, Qclass: miekg.ClassINET}}
	b, _ = m.Pack()
	r, ok = s.Answer("front", b)
	require.True(t, ok)
	require.Equal(t, miekg.RcodeFormatError, unpack(t, r).Rcode)
}

func TestEDNSIsEchoed(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	m := new(miekg.Msg)
	m.SetQuestion("web.", miekg.TypeA)
	m.SetEdns0(1232, false)
	b, _ := m.Pack()
	r, ok := s.Answer("front", b)
	require.True(t, ok)
	rm := unpack(t, r)
	require.NotNil(t, rm.IsEdns0())
	require.Equal(t, []string{"172.20.0.10"}, aRecords(t, rm))
}

func TestNetworkWithoutDNS(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	require.False(t, s.Serves("quiet"))
	require.False(t, s.Serves("nosuch"))
	_, ok := s.Answer("quiet", query(t, "hermit", miekg.TypeA))
	require.False(t, ok)
	require.False(t, s.Query("quiet", [4]byte{}, 1, query(t, "hermit", miekg.TypeA), func([]byte) { t.Fatal("replied") }))
	// and hermit is invisible everywhere else
	require.Equal(t, miekg.RcodeNameError, ask(t, s, "front", "hermit", miekg.TypeA).Rcode)
}

// fakeUpstream is a miekg/dns server on 127.0.0.1 answering every A query
// with 192.0.2.1, after hold (if set) lets it.
type fakeUpstream struct {
	addr string
	hits atomic.Int64
	hold chan struct{}
}

func startUpstream(t *testing.T, hold chan struct{}) *fakeUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeUpstream{addr: pc.LocalAddr().String(), hold: hold}
	started := make(chan struct{})
	srv := &miekg.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) }, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		f.hits.Add(1)
		if f.hold != nil {
			<-f.hold
		}
		m := new(miekg.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		m.Answer = append(m.Answer, &miekg.A{Hdr: miekg.RR_Header{Name: r.Question[0].Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 1)})
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

// deadPort returns a 127.0.0.1 UDP address nothing listens on.
func deadPort(t *testing.T) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// blackhole returns a 127.0.0.1 UDP address that reads and never answers.
func blackhole(t *testing.T) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

// queryAsync hands a query to Query and returns the channel its reply
// arrives on.
func queryAsync(t *testing.T, s *Server, name string) <-chan *miekg.Msg {
	t.Helper()
	ch := make(chan *miekg.Msg, 1)
	require.True(t, s.Query("front", [4]byte{172, 20, 0, 10}, 40000, query(t, name, miekg.TypeA), func(b []byte) {
		m := new(miekg.Msg)
		if m.Unpack(b) != nil {
			m = nil
		}
		ch <- m
	}))
	return ch
}

func wait(t *testing.T, ch <-chan *miekg.Msg) *miekg.Msg {
	t.Helper()
	select {
	case m := <-ch:
		require.NotNil(t, m, "reply does not parse")
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
		return nil
	}
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t, nil)
	s := New(testPlan(t, deadPort(t), up.addr), &net.Dialer{}, nil)
	defer s.Close()
	m := wait(t, queryAsync(t, s, "example.com"))
	require.Equal(t, miekg.RcodeSuccess, m.Rcode)
	require.EqualValues(t, 0x1234, m.Id)
	require.Len(t, m.Answer, 1)
	require.Equal(t, "192.0.2.1", m.Answer[0].(*miekg.A).A.String())
	require.EqualValues(t, 1, up.hits.Load())
	st := s.Stats()
	require.EqualValues(t, 1, st.Forwarded)
	require.Zero(t, st.UpstreamErr)

	// Local names, names on other networks and under "<network>" never go
	// upstream; unknown single labels do, as with Docker's resolver.
	require.Equal(t, []string{"172.20.0.10"}, aRecords(t, wait(t, queryAsync(t, s, "web"))))
	require.Equal(t, miekg.RcodeNameError, wait(t, queryAsync(t, s, "db")).Rcode)
	require.Equal(t, miekg.RcodeNameError, wait(t, queryAsync(t, s, "nosuch.front")).Rcode)
	require.EqualValues(t, 1, up.hits.Load())
	m = wait(t, queryAsync(t, s, "nosuch"))
	require.Len(t, m.Answer, 1)
	require.Equal(t, "192.0.2.1", m.Answer[0].(*miekg.A).A.String())
	require.EqualValues(t, 2, up.hits.Load())

	// With upstream servers, local replies say recursion is available.
	require.True(t, ask(t, s, "front", "web", miekg.TypeA).RecursionAvailable)
}

func TestForwardingServfailWhenNoUpstreamAnswers(t *testing.T) {
	s := New(testPlan(t, deadPort(t), blackhole(t)), &net.Dialer{}, nil)
	s.timeout = 200 * time.Millisecond
	defer s.Close()
	t0 := time.Now()
	m := wait(t, queryAsync(t, s, "example.com"))
	require.Equal(t, miekg.RcodeServerFailure, m.Rcode)
	require.EqualValues(t, 0x1234, m.Id)
	require.Less(t, time.Since(t0), 3*time.Second)
	require.EqualValues(t, 1, s.Stats().UpstreamErr)
}

// Beyond the queries asking upstream at once, more wait for their turn;
// beyond the queue, SERVFAIL at once.
func TestForwardingIsBounded(t *testing.T) {
	hold := make(chan struct{})
	up := startUpstream(t, hold)
	s := New(testPlan(t, up.addr), &net.Dialer{}, nil)
	s.slots = make(chan struct{}, 2)
	s.maxPend = 3
	defer s.Close()
	defer close(hold) // before Close, on failure too
	a, b := queryAsync(t, s, "a.example"), queryAsync(t, s, "b.example")
	require.Eventually(t, func() bool { return up.hits.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	c := queryAsync(t, s, "c.example") // waits for a slot
	d := queryAsync(t, s, "d.example") // beyond the queue
	select {
	case m := <-d:
		require.Equal(t, miekg.RcodeServerFailure, m.Rcode)
	default:
		t.Fatal("the query beyond the queue was not answered at once")
	}
	require.EqualValues(t, 1, s.Stats().Overflow)
	require.EqualValues(t, 2, up.hits.Load(), "the queued query waits")
	for range 3 {
		hold <- struct{}{}
	}
	for _, ch := range []<-chan *miekg.Msg{a, b, c} {
		require.Equal(t, miekg.RcodeSuccess, wait(t, ch).Rcode)
	}
	require.EqualValues(t, 3, up.hits.Load())
	require.Eventually(t, func() bool { return len(s.slots) == 0 && s.pending.Load() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestCloseStopsForwardedQueries(t *testing.T) {
	s := New(testPlan(t, blackhole(t)), &net.Dialer{}, nil)
	s.timeout = time.Minute
	ch := queryAsync(t, s, "example.com")
	// Close while the query is asking upstream (it holds a slot).
	require.Eventually(t, func() bool { return len(s.slots) == 1 }, 5*time.Second, time.Millisecond, "the query never asked upstream")
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the worker")
	}
	select {
	case <-ch:
		t.Fatal("replied after Close")
	default:
	}
}

func TestNetnsDialerEmptyIsPlain(t *testing.T) {
	d, ok := NetnsDialer("").(*net.Dialer)
	require.True(t, ok)
	up := startUpstream(t, nil)
	c, err := d.DialContext(context.Background(), "udp", up.addr)
	require.NoError(t, err)
	c.Close()
}

// askFrom answers a query from src on network through Query.
func askFrom(t *testing.T, s *Server, network, src, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	var got []byte
	require.True(t, s.Query(network, netip.MustParseAddr(src).As4(), 5353, query(t, name, qtype), func(b []byte) { got = append([]byte(nil), b...) }))
	require.NotNil(t, got, "no synchronous reply")
	return unpack(t, got)
}

func TestEndpointOnSeveralNetworksSeesThemAll(t *testing.T) {
	s := New(testPlan(t), nil, nil)
	// api is on front (172.20.0.5) and back (172.21.0.5).
	require.Equal(t, []string{"172.21.0.20"}, aRecords(t, askFrom(t, s, "front", "172.20.0.5", "db", miekg.TypeA)))
	require.Equal(t, []string{"172.21.0.20"}, aRecords(t, askFrom(t, s, "front", "172.20.0.5", "database", miekg.TypeA)))
	require.Equal(t, []string{"172.21.0.20"}, aRecords(t, askFrom(t, s, "front", "172.20.0.5", "db.back", miekg.TypeA)))
	require.Equal(t, []string{"172.20.0.10"}, aRecords(t, askFrom(t, s, "back", "172.21.0.5", "www", miekg.TypeA)))
	// Its own name: the address on the network it asks on first.
	require.Equal(t, []string{"172.20.0.5"}, aRecords(t, askFrom(t, s, "front", "172.20.0.5", "api", miekg.TypeA)))
	require.Equal(t, []string{"172.21.0.5"}, aRecords(t, askFrom(t, s, "back", "172.21.0.5", "api", miekg.TypeA)))
	m := askFrom(t, s, "front", "172.20.0.5", "20.0.21.172.in-addr.arpa", miekg.TypePTR)
	require.Equal(t, "db.", m.Answer[0].(*miekg.PTR).Ptr)
	require.Equal(t, miekg.RcodeNameError, askFrom(t, s, "front", "172.20.0.5", "nosuch", miekg.TypeA).Rcode)

	// web, on front only, still sees none of back's names.
	require.Equal(t, miekg.RcodeNameError, askFrom(t, s, "front", "172.20.0.10", "db", miekg.TypeA).Rcode)
	require.Equal(t, miekg.RcodeRefused, askFrom(t, s, "front", "172.20.0.10", "20.0.21.172.in-addr.arpa", miekg.TypePTR).Rcode)
	// and api's address on back, claimed as a source on front, is just anyone.
	require.Equal(t, miekg.RcodeNameError, askFrom(t, s, "front", "172.21.0.5", "db", miekg.TypeA).Rcode)
}
