package e2e

import (
	encbin "encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// multiLoopConfig: one network with four TAP endpoints (vnet headers,
// offloads: the busy-poll threads serve them).
func multiLoopConfig(name string) string {
	cfg := fmt.Sprintf("name = %q\n\n[[network]]\nname = \"lan\"\nsubnet = \"10.81.0.0/24\"\n", name)
	for _, ep := range []string{"a", "b", "c", "d"} {
		cfg += fmt.Sprintf("\n[[endpoint]]\nname = \"%s-%s\"\nnetwork = \"lan\"\n", name, ep)
	}
	return cfg
}

// The endpoints' addresses, in order.
const mlA, mlB, mlC, mlD = "10.81.0.2", "10.81.0.3", "10.81.0.4", "10.81.0.5"

// loopMetrics reads uswitch_busy_poll_loop_<what>{loop="i"} of loops 0 and 1.
func loopMetrics(t *testing.T, c *http.Client, what string) [2]float64 {
	t.Helper()
	var v [2]float64
	for i := range v {
		var err error
		v[i], err = metric(c, fmt.Sprintf("uswitch_busy_poll_loop_%s{loop=\"%d\"}", what, i))
		require.NoError(t, err)
	}
	return v
}

// sink accepts connections on l and reads them to the end.
func sink(l net.Listener) {
	acceptEach(l, func(c net.Conn) { io.Copy(io.Discard, c) })
}

// push writes n bytes to c.
func push(c net.Conn, n int) error {
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.Write(make([]byte, n))
	return err
}

// loopOf pushes n bytes through c and returns the loop that carried them:
// the one whose frame counter grew, while the other's grew by at most a
// tenth of that (what else moves meanwhile). It fails if the stream was
// split over both.
func loopOf(t *testing.T, mc *http.Client, c net.Conn, n int) int {
	t.Helper()
	before := loopMetrics(t, mc, "frames_total")
	require.NoError(t, push(c, n))
	var d [2]float64
	// The last frames are counted once their burst is carried.
	require.Eventually(t, func() bool {
		after := loopMetrics(t, mc, "frames_total")
		d = [2]float64{after[0] - before[0], after[1] - before[1]}
		return max(d[0], d[1]) >= 20
	}, 10*time.Second, 10*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the rest of the ACKs, if any
	after := loopMetrics(t, mc, "frames_total")
	d = [2]float64{after[0] - before[0], after[1] - before[1]}
	i := 0
	if d[1] > d[0] {
		i = 1
	}
	require.LessOrEqual(t, d[1-i], d[i]/10+5, "one stream's frames on both loops: %v", d)
	return i
}

// TestPollThreadsSpreadFlows: with two busy-poll threads each TAP has two
// queues, one per thread. A TCP stream stays on one thread, both ways;
// streams between different endpoint pairs spread over both threads, each
// keeping its own; numbered UDP datagrams of one flow arrive in order.
func TestPollThreadsSpreadFlows(t *testing.T) {
	needRoot(t)
	name := prefix("mlp")
	cfg := writeConfig(t, multiLoopConfig(name))
	start(t, name, cfg, "--poll-threads", "2")
	mc := controlClient(name)
	require.Equal(t, [2]float64{4, 4}, loopMetrics(t, mc, "queues"), "every TAP's two queues, one per loop")
	a, b, c, d := name+"-a", name+"-b", name+"-c", name+"-d"

	go sink(listen(t, b, mlB+":5001"))
	go sink(listen(t, d, mlD+":5001"))
	ab := dial(t, a, mlB+":5001")
	require.NoError(t, push(ab, 1<<20)) // settles on its loop
	first := loopOf(t, mc, ab, 8<<20)
	require.Equal(t, first, loopOf(t, mc, ab, 8<<20), "a stream moved to the other loop")

	// Connections c -> d (each from a new port: another hash) until one
	// is on the other loop: the kernel spreads flows over the queues.
	var cd net.Conn
	for try := 0; cd == nil; try++ {
		require.Less(t, try, 24, "24 connections c -> d all on loop %d", first)
		conn := dial(t, c, mlD+":5001")
		require.NoError(t, push(conn, 1<<20))
		if loopOf(t, mc, conn, 4<<20) != first {
			cd = conn
		} else {
			conn.Close()
		}
	}

	// Both at once: each loop carries one.
	before := loopMetrics(t, mc, "frames_total")
	errs := make(chan error, 2)
	for _, conn := range []net.Conn{ab, cd} {
		go func() {
			for range 8 {
				if err := push(conn, 8<<20); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	after := loopMetrics(t, mc, "frames_total")
	for i := range 2 {
		require.Greater(t, after[i]-before[i], 500.0, "loop %d carried %v frames of two 64 MB streams", i, after[i]-before[i])
	}
	// Each stream still on its own loop.
	require.Equal(t, first, loopOf(t, mc, ab, 8<<20))
	require.Equal(t, 1-first, loopOf(t, mc, cd, 8<<20))

	t.Run("udp in order", func(t *testing.T) {
		udpInOrder(t, a, b, mlB+":5002", 4000)
	})
}

// udpInOrder sends n numbered datagrams from ns to addr (served in srvNS)
// and requires those that arrive to arrive in order, most of them.
func udpInOrder(t *testing.T, ns, srvNS, addr string, n int) {
	t.Helper()
	var pc net.PacketConn
	var err error
	inNetns(t, srvNS, func() { pc, err = net.ListenPacket("udp4", addr) })
	require.NoError(t, err)
	defer pc.Close()
	var conn net.Conn
	inNetns(t, ns, func() { conn, err = net.Dial("udp4", addr) })
	require.NoError(t, err)
	defer conn.Close()
	got := make(chan []uint32, 1)
	go func() {
		var seqs []uint32
		b := make([]byte, 2048)
		for {
			pc.SetReadDeadline(time.Now().Add(2 * time.Second))
			m, _, err := pc.ReadFrom(b)
			if err != nil || m < 4 {
				got <- seqs
				return
			}
			seqs = append(seqs, encbin.BigEndian.Uint32(b))
			if seqs[len(seqs)-1] == uint32(n-1) {
				got <- seqs
				return
			}
		}
	}()
	msg := make([]byte, 200)
	for i := range n {
		encbin.BigEndian.PutUint32(msg, uint32(i))
		_, err := conn.Write(msg)
		require.NoError(t, err)
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // a pace the path keeps up with
		}
	}
	seqs := <-got
	require.Greater(t, len(seqs), n/2, "most datagrams arrive")
	for i := 1; i < len(seqs); i++ {
		require.Greater(t, seqs[i], seqs[i-1], "datagram %d after %d", seqs[i], seqs[i-1])
	}
}

// TestPollThreadsRestartInPlace: persistent TAPs are attached again by the
// next run after a kill, whatever the queues they were made with: a
// multi-queue run after a multi-queue one gets every queue back, after a
// single-queue run (an older uswitch) it reads the single-queue TAPs from
// loop 0, and a single-thread run takes multi-queue TAPs with one queue.
// Each time the TAPs are the same devices and carry TCP.
func TestPollThreadsRestartInPlace(t *testing.T) {
	needRoot(t)
	name := prefix("mlr")
	cfg := writeConfig(t, multiLoopConfig(name))
	a, b := name+"-a", name+"-b"
	// restarts kills the run and starts it again with each number of
	// threads: the TAPs stay the same devices, each loop reads the queues
	// it should, and they carry TCP.
	type restart struct {
		threads string
		queues  [2]float64 // each loop's queues, with two loops
	}
	restarts := func(in *instance, steps ...restart) *instance {
		idx := ifindex(t, a, "eth0")
		require.NotEmpty(t, idx)
		for _, step := range steps {
			in.kill()
			in = start(t, name, cfg, "--poll-threads", step.threads)
			require.Equal(t, idx, ifindex(t, a, "eth0"), "the TAP was made again")
			if step.threads == "2" {
				require.Equal(t, step.queues, loopMetrics(t, controlClient(name), "queues"))
			}
			carry(t, a, b, mlB+":5001", mlB+":5001", 4<<20)
		}
		return in
	}
	// Single-queue TAPs (as an older uswitch made them) stay so.
	in := restarts(start(t, name, cfg, "--poll-threads", "1"),
		restart{"2", [2]float64{4, 0}}, restart{"1", [2]float64{}}, restart{"2", [2]float64{4, 0}})
	// Made multi-queue (after a stop), kept multi-queue.
	require.NoError(t, in.stop())
	restarts(start(t, name, cfg, "--poll-threads", "2"),
		restart{"2", [2]float64{4, 4}}, restart{"1", [2]float64{}}, restart{"2", [2]float64{4, 4}})
}

// TestPollThreadsLive: with two threads, a TAP attached while running gets
// a queue on each, a veth stays on the first, and a TAP whose namespace is
// deleted from outside leaves both threads, which go on carrying the
// others.
func TestPollThreadsLive(t *testing.T) {
	needRoot(t)
	name := prefix("mll")
	in := start(t, name, writeConfig(t, liveConfig(name)), "--poll-threads", "2")
	mc := controlClient(name)
	// a's TAP and the uplink's on both, b's veth on the first.
	require.Equal(t, [2]float64{3, 2}, loopMetrics(t, mc, "queues"))
	ctr := name + "-ctr"
	testNetns(t, ctr)
	att := attach(t, in, ctr, "feedfacecafe0002", "tap")
	require.Equal(t, [2]float64{4, 3}, loopMetrics(t, mc, "queues"))
	echoServer(t, name+"-a", "0.0.0.0:7")
	tcpEcho(t, ctr, "10.91.0.2:7")
	echoServer(t, ctr, "0.0.0.0:7")
	tcpEcho(t, name+"-b", ipOf(att)+":7")
	echoServer(t, name+"-host", "0.0.0.0:7")

	// a's namespace deleted from outside: its TAP is let go of.
	out, err := exec.Command("ip", "netns", "del", name+"-a").CombinedOutput()
	require.NoError(t, err, string(out))
	require.Eventually(t, func() bool { return loopMetrics(t, mc, "queues") == [2]float64{3, 2} }, 10*time.Second, 20*time.Millisecond,
		"the gone namespace's TAP still read: %v", loopMetrics(t, mc, "queues"))
	tcpEcho(t, name+"-b", ipOf(att)+":7")
	tcpEcho(t, ctr, "10.253.0.1:7") // through the uplink, masqueraded
}
