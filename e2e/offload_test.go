package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/packet"
)

// offloadConfig: lan with two TAP endpoints and a veth one, an open network
// "far" to route to, and an uplink whose host side is a namespace of the
// test, masqueraded; a publishes 80 as 8080. offload selects TAPs with vnet
// headers (and packet sockets with them) or plain ones.
func offloadConfig(name string, offload bool) string {
	return fmt.Sprintf(`
name = %[1]q

[defaults]
offload = %[2]t

[uplink]
address = "10.254.7.2/30"
host_address = "10.254.7.1/30"
netns = "%[1]s-host"
routes = false

[[network]]
name = "lan"
subnet = "10.78.0.0/24"
isolate = false

[[network]]
name = "far"
subnet = "10.79.0.0/24"
isolate = false

[[endpoint]]
name = "%[1]s-a"
network = "lan"
publish = ["8080:80/tcp"]

[[endpoint]]
name = "%[1]s-b"
network = "lan"

[[endpoint]]
name = "%[1]s-c"
network = "lan"
link = "veth"

[[endpoint]]
name = "%[1]s-r"
network = "far"
`, name, offload)
}

// carry sends size random bytes over TCP from ns to addr, served by a
// hash server in srvNS on listenAddr, and requires them to arrive intact.
func carry(t *testing.T, ns, srvNS, listenAddr, addr string, size int) {
	t.Helper()
	l := listen(t, srvNS, listenAddr)
	go hashServer(l)
	require.NoError(t, transfer(t, ns, addr, size), "%s -> %s", ns, addr)
	l.Close()
}

// tcpCsumErrors reads the TCP checksum error counter of a namespace: a
// receiver that got a segment with a bad checksum counts it there.
func tcpCsumErrors(t *testing.T, ns string) int {
	t.Helper()
	out, err := nsExec(ns, "cat", "/proc/net/snmp")
	require.NoError(t, err, out)
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "InCsumErrors" {
				v, err := strconv.Atoi(f[i])
				require.NoError(t, err)
				return v
			}
		}
	}
	t.Fatalf("no Tcp InCsumErrors in /proc/net/snmp of %s", ns)
	return 0
}

// TestOffloads carries TCP through every kind of path, with offloads on and
// off, each with reader goroutines and with the busy-poll thread (which
// serves the TAPs with vnet headers and the packet sockets of the veths),
// and with two busy-poll threads (multi-queue TAPs, the veth on the first),
// and with one and two threads reading the TAPs through io_uring (the veth
// through the epoll set the ring polls):
// switched between TAPs and to and from a veth, routed between networks,
// masqueraded to the host and published from it. Every transfer must
// arrive intact with no receiver counting a checksum error, and a capture
// during a transfer must hold only valid wire frames.
func TestOffloads(t *testing.T) {
	needRoot(t)
	for _, mode := range []struct {
		offload, busyPoll bool
		threads           int
		ioUring           bool
	}{{true, false, 1, false}, {false, false, 1, false}, {true, true, 1, false}, {false, true, 1, false}, {true, true, 2, false}, {true, true, 1, true}, {true, true, 2, true}} {
		offload := mode.offload
		t.Run(fmt.Sprintf("offload=%t,busy-poll=%t,poll-threads=%d,io-uring=%t", offload, mode.busyPoll, mode.threads, mode.ioUring), func(t *testing.T) {
			name := prefix("off")
			cfg := writeConfig(t, offloadConfig(name, offload))
			in := start(t, name, cfg, fmt.Sprintf("--busy-poll=%t", mode.busyPoll), fmt.Sprintf("--poll-threads=%d", mode.threads), fmt.Sprintf("--io-uring=%t", mode.ioUring))
			if mode.ioUring {
				require.Eventually(t, func() bool { return ioUrings(t, in.cmd.Process.Pid) == mode.threads }, 10*time.Second, 10*time.Millisecond, "a ring per busy-poll thread")
			}
			if mode.busyPoll {
				// The thread serves the TAPs with vnet headers (a, b, r and
				// the uplink) and the veth (c); plain TAPs keep readers.
				n, err := metric(controlClient(name), "uswitch_busy_poll_ports")
				require.NoError(t, err)
				want := 1.0
				if offload {
					want = 5
				}
				require.Equal(t, want, n, "ports served by the busy-poll thread")
			}
			a, b, c, r, host := name+"-a", name+"-b", name+"-c", name+"-r", name+"-host"
			const ipA, ipB, ipC, ipR = "10.78.0.2", "10.78.0.3", "10.78.0.4", "10.79.0.2"
			const size = 16 << 20

			// Each case both ways where both ends can reach each other;
			// the host reaches a only through its published port.
			for _, tc := range []struct{ what, from, to, fromIP, toIP string }{
				{"tap and tap", a, b, ipA, ipB},
				{"tap and veth", a, c, ipA, ipC},
				{"veth and tap", c, b, ipC, ipB},
				{"routed", a, r, ipA, ipR},
				{"routed from veth", c, r, ipC, ipR},
			} {
				t.Run(tc.what, func(t *testing.T) {
					carry(t, tc.from, tc.to, tc.toIP+":5001", tc.toIP+":5001", size)
					carry(t, tc.to, tc.from, tc.fromIP+":5002", tc.fromIP+":5002", size/4)
				})
			}
			t.Run("masqueraded to the host", func(t *testing.T) {
				carry(t, a, host, "10.254.7.1:5003", "10.254.7.1:5003", size)
				carry(t, c, host, "10.254.7.1:5004", "10.254.7.1:5004", size)
			})
			t.Run("published from the host", func(t *testing.T) {
				carry(t, host, a, ipA+":80", "10.254.7.2:8080", size)
			})
			// With offloads, the frames were super-frames; without, none
			// was larger than a wire frame.
			for _, p := range in.ports(t) {
				if p.Name == a || p.Name == c {
					avg := p.RxBytes / max(p.RxPackets, 1)
					if offload {
						require.Greater(t, avg, uint64(4000), "%s: %d bytes a frame", p.Name, avg)
					} else {
						require.LessOrEqual(t, avg, uint64(1514), "%s: %d bytes a frame", p.Name, avg)
					}
				}
			}
			for _, ns := range []string{a, b, c, r, host} {
				require.Zero(t, tcpCsumErrors(t, ns), "TCP checksum errors counted in %s", ns)
			}

			t.Run("capture holds valid wire frames", func(t *testing.T) {
				file := filepath.Join(t.TempDir(), "t.pcap")
				cmd := exec.Command(binary, "capture", "--port", a, "-c", "400", "-w", file, "--config", cfg)
				var errb lockedBuffer
				cmd.Stderr = &errb
				require.NoError(t, cmd.Start())
				require.Eventually(t, func() bool { return strings.Contains(errb.String(), "listening on") }, 10*time.Second, 20*time.Millisecond)
				carry(t, a, b, ipB+":5010", ipB+":5010", 4<<20)
				require.NoError(t, cmd.Wait(), errb.String())
				requireValidCapture(t, file)
			})
		})
	}
}

// requireValidCapture reads a pcap file and requires every frame to be a
// wire frame: at most 1514 bytes, IPv4 and TCP checksums valid.
func requireValidCapture(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	require.NoError(t, err)
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	require.NoError(t, err)
	tcpFrames := 0
	for {
		data, ci, err := rd.ReadPacketData()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		require.Equal(t, ci.Length, ci.CaptureLength, "not truncated")
		require.LessOrEqual(t, len(data), 1514, "a wire frame, not a super-frame")
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if p.Layer(layers.LayerTypeIPv4) == nil {
			continue
		}
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue
		}
		tcpFrames++
		v := packet.IPv4(data[packet.EthernetHeaderLen:])
		require.True(t, v.HeaderChecksumValid(), "IPv4 header checksum of frame %d", tcpFrames)
		l4 := v.Payload()
		require.Zero(t, packet.Checksum(l4, packet.PseudoHeaderSum(v.Src(), v.Dst(), packet.ProtoTCP, uint16(len(l4)))),
			"TCP checksum of frame %d (%s)", tcpFrames, tcp.TransportFlow())
	}
	require.Greater(t, tcpFrames, 100)
}
