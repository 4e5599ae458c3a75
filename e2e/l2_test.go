package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// l2Config is one network with three endpoints: two on TAPs, one on a veth.
func l2Config(name string) string {
	return fmt.Sprintf(`
name = %[1]q

[[network]]
name = "lan"
subnet = "10.77.0.0/24"

[[endpoint]]
name = "%[1]s-a"
network = "lan"

[[endpoint]]
name = "%[1]s-b"
network = "lan"

[[endpoint]]
name = "%[1]s-c"
network = "lan"
link = "veth"
`, name)
}

type fdbRow struct {
	Network string `json:"network"`
	MAC     string `json:"mac"`
	Port    string `json:"port"`
	Static  bool   `json:"static"`
}

func TestL2ThreeNamespaces(t *testing.T) {
	needRoot(t)
	name := prefix("l2")
	// A probe endpoint without port security, so that frames from source
	// MACs of the test's choosing reach the FDB.
	probe := name + "-p"
	cfg := writeConfig(t, l2Config(name)+"\n[[endpoint]]\nname = \""+probe+"\"\nnetwork = \"lan\"\nport_security = false\n")
	in := start(t, name, cfg)

	// `uswitch fdb --watch` running before any traffic reports the learning.
	watch := exec.Command(binary, "fdb", "--watch", "-o", "json", "--config", cfg)
	var watchOut lockedBuffer
	watch.Stdout = &watchOut
	require.NoError(t, watch.Start())
	t.Cleanup(func() { watch.Process.Kill(); watch.Wait() })
	// The watch is subscribed once it reports a MAC the probe sent from:
	// send broadcasts each from a new source MAC until one shows up, then
	// wait for the last one sent. Events before that are the probe's.
	fd, ifindex := packetSocket(t, probe)
	var probeMAC string
	require.Eventually(t, func() bool {
		src := net.HardwareAddr{0x02, 0x99, 0, 0, 0, 0}
		_, _ = rand.Read(src[2:])
		frame := make([]byte, 60)
		copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(frame[6:12], src)
		frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType
		to := &unix.SockaddrLinklayer{Ifindex: ifindex, Protocol: 0xb588 /* htons(0x88b5) */, Halen: 6}
		copy(to.Addr[:], frame[0:6])
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return false
		}
		probeMAC = src.String()
		return strings.Contains(watchOut.String(), `"mac":"02:99:`)
	}, 10*time.Second, 50*time.Millisecond, "the watch reports none of the probe's MACs:\n%s", watchOut.String())
	require.Eventually(t, func() bool { return strings.Contains(watchOut.String(), `"mac":"`+probeMAC+`"`) },
		5*time.Second, 10*time.Millisecond, "the watch does not report the probe's last MAC %s:\n%s", probeMAC, watchOut.String())
	before := len(watchOut.String())

	ips := map[string]string{name + "-a": "10.77.0.2", name + "-b": "10.77.0.3", name + "-c": "10.77.0.4"}
	t.Run("ping every pair", func(t *testing.T) {
		for from := range ips {
			for to, ip := range ips {
				if from != to {
					ping(t, from, ip)
				}
			}
		}
	})

	t.Run("watch reported learning", func(t *testing.T) {
		// Each endpoint's MAC learned on its port, and nothing else.
		want := map[string]string{
			"02:42:0a:4d:00:02": name + "-a", "02:42:0a:4d:00:03": name + "-b", "02:42:0a:4d:00:04": name + "-c",
		}
		got := map[string]string{}
		require.Eventually(t, func() bool {
			got = map[string]string{}
			for _, line := range strings.Split(strings.TrimSpace(watchOut.String()[before:]), "\n") {
				var ev struct{ Event, Network, MAC, Port string }
				if json.Unmarshal([]byte(line), &ev) == nil && ev.Event == "learned" && ev.Network == "lan" {
					got[ev.MAC] = ev.Port
				}
			}
			return len(got) >= len(want)
		}, 5*time.Second, 50*time.Millisecond, watchOut.String())
		require.Equal(t, want, got, watchOut.String()[before:])
	})

	t.Run("fdb lists each MAC on its own port", func(t *testing.T) {
		out, err := in.cli("fdb", "-o", "json")
		require.NoError(t, err)
		var rows []fdbRow
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		got := map[string]string{}
		for _, r := range rows {
			got[r.Port] = r.MAC
		}
		// MACs derived from the IPs: 02:42 + the four address bytes.
		require.Equal(t, "02:42:0a:4d:00:02", got[name+"-a"])
		require.Equal(t, "02:42:0a:4d:00:03", got[name+"-b"])
		require.Equal(t, "02:42:0a:4d:00:04", got[name+"-c"])
	})

	t.Run("tcp transfer arrives intact", func(t *testing.T) {
		for _, pair := range [][2]string{{name + "-a", name + "-b"}, {name + "-b", name + "-c"}} {
			l := listen(t, pair[1], ips[pair[1]]+":5001")
			payload := make([]byte, 8<<20)
			_, _ = rand.Read(payload)
			got := make(chan [32]byte, 1)
			go func() {
				c, err := l.Accept()
				if err != nil {
					got <- [32]byte{}
					return
				}
				defer c.Close()
				h := sha256.New()
				_, _ = io.Copy(h, c)
				got <- [32]byte(h.Sum(nil))
			}()
			c := dial(t, pair[0], ips[pair[1]]+":5001")
			_, err := io.Copy(c, bytes.NewReader(payload))
			require.NoError(t, err)
			require.NoError(t, c.Close())
			select {
			case sum := <-got:
				require.Equal(t, sha256.Sum256(payload), sum, "%s -> %s", pair[0], pair[1])
			case <-time.After(30 * time.Second):
				t.Fatalf("transfer %s -> %s did not finish", pair[0], pair[1])
			}
		}
	})

	t.Run("ports count the traffic", func(t *testing.T) {
		ports := in.ports(t)
		require.Len(t, ports, 5, "three endpoints, the probe and the gateway")
		require.Equal(t, "gw/lan", ports[0].Name)
		// Each endpoint sent or received 8 MiB (in super-frames, with
		// offloads: a few hundred frames), and the other way the ACKs.
		for _, p := range ports[1:] {
			if p.Name == probe {
				require.Positive(t, p.RxPackets, "the probe's frames")
				continue
			}
			require.Greater(t, p.RxBytes+p.TxBytes, uint64(8<<20), p.Name)
			require.Greater(t, p.RxPackets, uint64(50), p.Name)
			require.Greater(t, p.TxPackets, uint64(50), p.Name)
		}
	})

	t.Run("SIGTERM removes everything", func(t *testing.T) {
		require.NoError(t, in.stop())
		for _, ns := range append(slices.Collect(maps.Keys(ips)), probe) {
			require.False(t, netnsExists(ns), "netns %s left behind", ns)
			_, err := os.Stat(filepath.Join("/etc/netns", ns))
			require.True(t, os.IsNotExist(err), "/etc/netns/%s left behind", ns)
		}
		require.Empty(t, linksWithPrefix(t, name))
		for _, f := range []string{".sock", ".json", ".state.json"} {
			_, err := os.Stat(filepath.Join("/run/uswitch", name+f))
			require.True(t, os.IsNotExist(err), "%s%s left behind", name, f)
		}
	})
}

func TestRunAfterKill9(t *testing.T) {
	needRoot(t)
	name := prefix("k9")
	cfg := writeConfig(t, l2Config(name))
	first := start(t, name, cfg)
	first.kill()
	require.True(t, netnsExists(name+"-a"), "a killed run leaves its namespaces")

	second := start(t, name, cfg)
	ping(t, name+"-a", "10.77.0.4")
	ping(t, name+"-c", "10.77.0.3")
	require.NoError(t, second.stop())
	require.False(t, netnsExists(name+"-a"))
	require.Empty(t, linksWithPrefix(t, name))
}

func TestDownAfterKill9(t *testing.T) {
	needRoot(t)
	name := prefix("dn")
	cfg := writeConfig(t, l2Config(name))
	in := start(t, name, cfg)
	in.kill()
	out, err := exec.Command(binary, "down", "--config", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.False(t, netnsExists(name+"-a"))
	require.False(t, netnsExists(name+"-c"))
	require.Empty(t, linksWithPrefix(t, name))
	out, err = exec.Command(binary, "down", "--config", cfg).CombinedOutput()
	require.NoError(t, err, "down is idempotent: %s", out)
}

func TestBadConfigCreatesNothing(t *testing.T) {
	needRoot(t)
	name := prefix("bad")
	cfg := writeConfig(t, l2Config(name)+"\n[[endpoint]]\nname = \""+name+"-d\"\nnetwork = \"lan\"\nip = \"10.78.0.9\"\n")
	out, err := exec.Command(binary, "run", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "outside")
	require.False(t, netnsExists(name+"-a"))
	require.Empty(t, linksWithPrefix(t, name))
}

func TestInspectionWithoutInstance(t *testing.T) {
	needRoot(t)
	cfg := writeConfig(t, l2Config(prefix("none")))
	out, err := exec.Command(binary, "fdb", "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "no uswitch instance is running")
}
