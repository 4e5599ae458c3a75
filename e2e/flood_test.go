package e2e

import (
	bo "encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// floodConfig: one network, fdb_max 1024; the flooding endpoint (.2) has
// no port security, so its forged source MACs reach the FDB; a (.3) and b
// (.4) ping each other through the flood; sink (.5) is where the flood goes.
func floodConfig(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[defaults]
fdb_max = 1024

[[network]]
name = "lan"
subnet = "10.87.0.0/24"

[[endpoint]]
name = "%[1]s-f"
network = "lan"
port_security = false

[[endpoint]]
name = "%[1]s-a"
network = "lan"

[[endpoint]]
name = "%[1]s-b"
network = "lan"

[[endpoint]]
name = "%[1]s-s"
network = "lan"
`, name)
}

// rssKiB is the resident set size of process pid in KiB, from
// /proc/PID/status.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			require.NoError(t, err, line)
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// packetSocket opens a raw AF_PACKET socket on ns's eth0 (it stays in that
// namespace) and returns it with the interface index.
func packetSocket(t *testing.T, ns string) (int, int) {
	t.Helper()
	fd, ifindex := -1, 0
	var err error
	inNetns(t, ns, func() {
		var ifc *net.Interface
		if ifc, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		ifindex = ifc.Index
		// Protocol 0: the socket sends only, it never receives.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	})
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

// TestFloodRandomSourceMACs: one endpoint without port security sends up
// to 200,000 frames (or for 15 s) each from a new random source MAC. The
// FDB stops learning at fdb_max, uswitch's memory stays bounded, and two
// other endpoints keep pinging each other throughout.
func TestFloodRandomSourceMACs(t *testing.T) {
	needRoot(t)
	name := prefix("fl")
	in := start(t, name, writeConfig(t, floodConfig(name)))
	f, a, b, s := name+"-f", name+"-a", name+"-b", name+"-s"
	const aIP, bIP, sIP = "10.87.0.3", "10.87.0.4", "10.87.0.5"
	sinkMAC := [6]byte{0x02, 0x42, 10, 87, 0, 5}
	ping(t, a, bIP)
	ping(t, f, sIP) // the sink's MAC is known: the flood goes to it alone
	ping(t, s, aIP)
	pid := in.cmd.Process.Pid
	rssBefore := rssKiB(t, pid)

	const maxFrames, maxTime, rate = 200_000, 15 * time.Second, 20_000
	fd, ifindex := packetSocket(t, f)
	var sent, sendErrs atomic.Int64
	stopPing := make(chan struct{})
	var rounds, failed atomic.Int64
	var pingOut strings.Builder
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stopPing:
				return
			default:
			}
			// A round fails when none of its three requests is answered.
			r, err := echo(a, bIP, echoOpts{count: 3})
			rounds.Add(1)
			if err != nil {
				failed.Add(1)
				pingOut.WriteString(err.Error() + "\n")
			} else if r.received == 0 {
				failed.Add(1)
				pingOut.WriteString(r.String())
			}
		}
	}()

	frame := make([]byte, 64)
	copy(frame[0:6], sinkMAC[:])
	bo.BigEndian.PutUint16(frame[12:14], 0x88b5) // local experimental EtherType
	copy(frame[14:], "uswitch flood test")
	to := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: 0xb588 /* htons(0x88b5) */, Halen: 6}
	copy(to.Addr[:], sinkMAC[:])
	t0 := time.Now()
	for sent.Load() < maxFrames && time.Since(t0) < maxTime {
		r := rand.Uint64()
		bo.BigEndian.PutUint64(frame[4:12], r)
		frame[6] = frame[6]&0xfc | 0x02 // unicast, locally administered
		copy(frame[0:6], sinkMAC[:])    // PutUint64 wrote over the last two bytes of the destination
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			sendErrs.Add(1)
			if sendErrs.Load()%1000 == 0 {
				time.Sleep(time.Millisecond) // queue full: let it drain
			}
			continue
		}
		// Paced at rate frames/s in bursts of 500, so the flood lasts
		// about 10 s and the pings run through it rather than after it.
		if n := sent.Add(1); n%500 == 0 {
			if d := time.Until(t0.Add(time.Duration(n) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
		}
	}
	took := time.Since(t0)
	// A few more rounds after the flood: the pair still works once the FDB is full.
	time.Sleep(time.Second)
	close(stopPing)
	wg.Wait()
	ping(t, a, bIP)
	ping(t, b, aIP)

	rssAfter := rssKiB(t, pid)
	rx := in.port(t, f).RxPackets
	t.Logf("port %s received %d frames", f, rx)
	t.Logf("flood: %d frames in %v (%d send errors); ping rounds during it: %d, %d with no answer; RSS %d KiB -> %d KiB (%+d KiB)",
		sent.Load(), took.Round(time.Millisecond), sendErrs.Load(), rounds.Load(), failed.Load(), rssBefore, rssAfter, rssAfter-rssBefore)
	require.Positive(t, sent.Load())
	require.GreaterOrEqual(t, rounds.Load(), int64(3), "pings ran during the flood")
	require.Zero(t, failed.Load(), "ping rounds between %s and %s with no answer during the flood:\n%s", a, b, pingOut.String())
	// The bound: the FDB holds at most 1024 learned entries, a few hundred
	// KiB; 64 MiB leaves room for the race detector's shadow memory and GC
	// slack, while a table growing with every forged MAC (200,000 entries)
	// or queues growing without bound would exceed it.
	const rssBound = 64 << 10 // KiB
	require.Less(t, rssAfter-rssBefore, rssBound, "uswitch grew by %d KiB during the flood", rssAfter-rssBefore)

	out, err := in.cli("fdb", "-o", "json")
	require.NoError(t, err)
	var rows []fdbRow
	require.NoError(t, json.Unmarshal([]byte(out), &rows))
	learned, static := 0, 0
	for _, r := range rows {
		if r.Network != "lan" {
			continue
		}
		if r.Static {
			static++
		} else {
			learned++
		}
	}
	t.Logf("fdb of lan: %d learned, %d static", learned, static)
	require.LessOrEqual(t, learned, 1024, "fdb_max exceeded")
	require.LessOrEqual(t, static, 1, "only the gateway is static")
	require.GreaterOrEqual(t, learned, 1000, "the flood filled the FDB")

	// Filtered on the instance (uswitch fdb --port, --mac): the forged MACs
	// are on the flooder's port, and the sink's MAC is on the sink's alone.
	out, err = in.cli("fdb", "--network", "lan", "--port", f, "-o", "json")
	require.NoError(t, err)
	var onF []fdbRow
	require.NoError(t, json.Unmarshal([]byte(out), &onF))
	require.GreaterOrEqual(t, len(onF), 1000, "the forged MACs")
	for _, r := range onF {
		require.Equal(t, [2]string{"lan", f}, [2]string{r.Network, r.Port})
	}
	out, err = in.cli("fdb", "--mac", net.HardwareAddr(sinkMAC[:]).String(), "-o", "json")
	require.NoError(t, err)
	var sink []fdbRow
	require.NoError(t, json.Unmarshal([]byte(out), &sink))
	require.Equal(t, []fdbRow{{Network: "lan", MAC: net.HardwareAddr(sinkMAC[:]).String(), Port: s}}, sink)
}
