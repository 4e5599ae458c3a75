package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// dnsConfig: networks front and back with the embedded DNS, endpoints with
// aliases on each, one on both; upstream, when given, is the [dns] upstream
// (dialled from the uplink's namespace, a namespace of the test's own).
func dnsConfig(name, upstream string) string {
	dnsTable := ""
	if upstream != "" {
		dnsTable = fmt.Sprintf("[dns]\nupstream = [%q]\n", upstream)
	}
	return fmt.Sprintf(`
name = %[1]q

[uplink]
address = "10.252.0.2/30"
host_address = "10.252.0.1/30"
netns = "%[1]s-host"

%[2]s
[[network]]
name = "front"
subnet = "10.90.0.0/24"

[[network]]
name = "back"
subnet = "10.91.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "front"
ip = "10.90.0.10"
aliases = ["alpha"]

[[endpoint]]
name = "%[1]s-b"
network = "front"
link = "veth"
ip = "10.90.0.11"
aliases = ["bravo", "beta"]

[[endpoint]]
name = "%[1]s-c"
network = "back"
ip = "10.91.0.10"
aliases = ["charlie"]

[[endpoint]]
name = "%[1]s-m"
aliases = ["multi"]
  [[endpoint.interface]]
  network = "front"
  ip = "10.90.0.20"
  [[endpoint.interface]]
  network = "back"
  ip = "10.91.0.20"
`, name, dnsTable)
}

// resolves runs `getent hosts name` in ns and requires it to print ip.
func resolves(t *testing.T, ns, name, ip string) {
	t.Helper()
	out, err := nsExec(ns, "getent", "hosts", name)
	require.NoError(t, err, "getent hosts %s in %s: %s", name, ns, out)
	f := strings.Fields(out)
	require.NotEmpty(t, f, out)
	require.Equal(t, ip, f[0], "getent hosts %s in %s: %s", name, ns, out)
}

// doesNotResolve requires `getent hosts name` in ns to fail, at once: an
// answer, not a timeout.
func doesNotResolve(t *testing.T, ns, name string) {
	t.Helper()
	t0 := time.Now()
	out, err := nsExec(ns, "getent", "hosts", name)
	require.Error(t, err, "getent hosts %s in %s should fail: %s", name, ns, out)
	require.Less(t, time.Since(t0), 2*time.Second, "getent hosts %s in %s took too long: no answer?", name, ns)
}

func TestDNSNamesAndAliases(t *testing.T) {
	needRoot(t)
	name := prefix("dns")
	in := start(t, name, writeConfig(t, dnsConfig(name, "")))
	a, b, c, m := name+"-a", name+"-b", name+"-c", name+"-m"

	t.Run("names and aliases on the same network", func(t *testing.T) {
		resolves(t, a, b, "10.90.0.11")
		resolves(t, a, "bravo", "10.90.0.11")
		resolves(t, a, "beta", "10.90.0.11")
		resolves(t, b, a, "10.90.0.10")
		resolves(t, b, "alpha", "10.90.0.10")
		resolves(t, m, "charlie", "10.91.0.10")
	})
	t.Run("a multi-homed endpoint by its address on the asking network", func(t *testing.T) {
		resolves(t, a, m, "10.90.0.20")
		resolves(t, a, "multi", "10.90.0.20")
		resolves(t, c, m, "10.91.0.20")
		resolves(t, c, "multi", "10.91.0.20")
	})
	t.Run("names on other networks do not resolve", func(t *testing.T) {
		doesNotResolve(t, a, c)
		doesNotResolve(t, a, "charlie")
		doesNotResolve(t, c, a)
		doesNotResolve(t, c, "bravo")
	})
	t.Run("unknown names fail at once without upstream", func(t *testing.T) {
		doesNotResolve(t, a, "nosuch")
		doesNotResolve(t, a, "example.com")
	})
	t.Run("reverse lookups", func(t *testing.T) {
		out, err := nsExec(a, "getent", "hosts", "10.90.0.11")
		require.NoError(t, err, out)
		require.Contains(t, out, b)
	})
	t.Run("over TCP too", func(t *testing.T) {
		q := new(miekg.Msg)
		q.SetQuestion("bravo.", miekg.TypeA)
		var r *miekg.Msg
		var err error
		inNetns(t, a, func() {
			c := &miekg.Client{Net: "tcp", Timeout: 3 * time.Second}
			r, _, err = c.Exchange(q, "10.90.0.1:53")
		})
		require.NoError(t, err)
		require.Len(t, r.Answer, 1)
		require.Equal(t, "10.90.0.11", r.Answer[0].(*miekg.A).A.String())
	})
	// Still forwarding normally, and the process is alive.
	ping(t, a, "10.90.0.11")
	require.True(t, in.running(), "uswitch run exited")
}

func TestDNSForwardsToUpstream(t *testing.T) {
	needRoot(t)
	name := prefix("dnsup")
	// The fake upstream listens on 127.0.0.1 inside the uplink's namespace,
	// which uswitch creates: the address means nothing anywhere else.
	start(t, name, writeConfig(t, dnsConfig(name, "127.0.0.1:5533")))
	var hits atomic.Int64
	var pc net.PacketConn
	var err error
	inNetns(t, name+"-host", func() { pc, err = net.ListenPacket("udp4", "127.0.0.1:5533") })
	require.NoError(t, err)
	srv := &miekg.Server{PacketConn: pc, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		hits.Add(1)
		m := new(miekg.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		switch {
		case q.Name != "upstream.example.":
			m.Rcode = miekg.RcodeNameError
		case q.Qtype == miekg.TypeA:
			m.Answer = append(m.Answer, &miekg.A{Hdr: miekg.RR_Header{Name: q.Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 53)})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown(); pc.Close() })

	a := name + "-a"
	resolves(t, a, "upstream.example", "192.0.2.53")
	require.Positive(t, hits.Load())
	doesNotResolve(t, a, "missing.example")
	// Local names stay local; unknown single labels go upstream, as with
	// Docker's resolver.
	before := hits.Load()
	resolves(t, a, "bravo", "10.90.0.11")
	doesNotResolve(t, a, name+"-c")
	require.Equal(t, before, hits.Load())
	doesNotResolve(t, a, "nosuch")
	require.Greater(t, hits.Load(), before)
}
