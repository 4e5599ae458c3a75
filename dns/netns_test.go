package dns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	miekg "github.com/miekg/dns"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/internal/testenv"
	"github.com/uswitch-dev/uswitch/nsthread"
	"github.com/vishvananda/netns"
)

// testNetns makes a namespace of the test's own, with lo up, and removes it
// at the end.
func testNetns(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t, "ip")
	name := fmt.Sprintf("u%ddnsunit", os.Getpid()%10000)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return name
}

// listenIn opens a UDP socket on 127.0.0.1 inside namespace name.
func listenIn(t *testing.T, name string) net.PacketConn {
	t.Helper()
	ns, err := nsthread.Open(name)
	require.NoError(t, err)
	defer ns.Close()
	var pc net.PacketConn
	err = nsthread.In(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
		return err
	})
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })
	return pc
}

func TestNetnsDialer(t *testing.T) {
	name := testNetns(t)
	self, err := netns.Get() // before any thread switches namespace
	require.NoError(t, err)
	defer self.Close()
	pc := listenIn(t, name)
	srv := &miekg.Server{PacketConn: pc, Handler: miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		m := new(miekg.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &miekg.A{Hdr: miekg.RR_Header{Name: r.Question[0].Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 7)})
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	// 127.0.0.1:port exists only inside the namespace: only a socket made
	// there reaches it.
	s := New(testPlan(t, pc.LocalAddr().String()), NetnsDialer(name), nil)
	defer s.Close()
	for range 3 {
		m := wait(t, queryAsync(t, s, "example.com"))
		require.Equal(t, miekg.RcodeSuccess, m.Rcode)
		require.Equal(t, "192.0.2.7", m.Answer[0].(*miekg.A).A.String())
	}

	// No thread was left in the namespace.
	for range 20 {
		cur, err := netns.Get()
		require.NoError(t, err)
		require.True(t, cur.Equal(self))
		cur.Close()
		runtime.Gosched()
	}

	// A namespace that does not exist fails the dial, quickly.
	_, err = NetnsDialer(name+"-none").DialContext(context.Background(), "udp", "127.0.0.1:53")
	require.Error(t, err)
}
