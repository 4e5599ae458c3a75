package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/packet"
	vswitch "github.com/uswitch-dev/uswitch/switch"
	"github.com/uswitch-dev/uswitch/tap"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = dispatch(args, &o, &e)
	return code, o.String(), e.String()
}

func TestDispatchUsage(t *testing.T) {
	code, out, errOut := runCLI(t)
	require.Equal(t, 2, code)
	require.Empty(t, out)
	require.True(t, strings.HasPrefix(errOut, "usage: uswitch <command> [flags]\n"))

	code, out, errOut = runCLI(t, "help")
	require.Equal(t, 0, code)
	require.Empty(t, errOut)
	for _, c := range commands {
		require.Regexp(t, "(?m)^  "+regexp.QuoteMeta(c.name)+"( |$)", out)
		require.Regexp(t, "(?m)^        "+regexp.QuoteMeta(c.summary)+"$", out)
	}
	require.Contains(t, out, "  help [COMMAND]")

	code, out2, _ := runCLI(t, "--help")
	require.Equal(t, 0, code)
	require.Equal(t, out, out2)
}

// TestHelpWidth: no line of the overview is wider than 100 columns.
func TestHelpWidth(t *testing.T) {
	_, out, _ := runCLI(t, "help")
	for _, l := range strings.Split(out, "\n") {
		require.LessOrEqual(t, len(l), helpWidth, "%q", l)
	}
}

// TestHelpSynopses: the overview's synopsis of each command names every
// flag its flag set has, and asked-for help goes to stdout with exit 0.
func TestHelpSynopses(t *testing.T) {
	flagRE := regexp.MustCompile(`(?m)^  -([\w-]+)`)
	for _, c := range commands {
		forms := [][]string{{c.name}}
		if c.name == "endpoint" || c.name == "network" {
			forms = [][]string{{c.name, "add"}, {c.name, "rm"}, {c.name, "ls"}}
		}
		for _, form := range forms {
			code, out, errOut := runCLI(t, append(form, "-h")...)
			require.Equal(t, 0, code, "%v", form)
			require.Empty(t, errOut, "%v", form)
			require.True(t, strings.HasPrefix(out, "usage: uswitch "+strings.Join(form, " ")), "%v: %q", form, out)
			for _, m := range flagRE.FindAllStringSubmatch(out, -1) {
				require.Regexp(t, `(^|[\[ |])--?`+regexp.QuoteMeta(m[1])+`([ =\]]|$)`, c.args,
					"the synopsis of %s lacks -%s", c.name, m[1])
			}
		}
	}
	for _, args := range [][]string{{"help", "fdb"}, {"fdb", "-h"}, {"fdb", "--help"}, {"help", "endpoint"}, {"endpoint", "-h"}, {"help", "trace"}} {
		code, out, errOut := runCLI(t, args...)
		require.Equal(t, 0, code, "%v", args)
		require.Empty(t, errOut, "%v", args)
		require.True(t, strings.HasPrefix(out, "usage: uswitch "+args[len(args)-1]+" ") || strings.HasPrefix(out, "usage: uswitch "+args[0]+" "), "%v: %q", args, out)
	}
	_, out, _ := runCLI(t, "help", "fdb")
	require.Contains(t, out, "  -watch\n")
	_, out, _ = runCLI(t, "help", "endpoint")
	require.Contains(t, out, "[--ip6 IP6]")
}

// TestUsageMistakes: a command-line mistake, found by the flag set or by a
// check after it, prints its message and the command's usage on stderr,
// nothing on stdout, and exits 2 before the command does anything.
func TestUsageMistakes(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none.sock") // a mistake is reported before any connection
	cfg := filepath.Join(t.TempDir(), "missing.toml")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"fdb", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"fdb", "extra"}, `unexpected argument "extra"`},
		{[]string{"ports", "-o", "yaml"}, `unknown output format "yaml" (want table or json)`},
		{[]string{"version", "x"}, `unexpected argument "x"`},
		{[]string{"conntrack", "--proto"}, "flag needs an argument: -proto"},
		{[]string{"conntrack", "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"rules", "extra"}, `unexpected argument "extra"`},
		{[]string{"check", "-o", "yaml"}, `unknown output format "yaml"`},
		{[]string{"check", "extra"}, `unexpected argument "extra"`},
		{[]string{"down", "extra"}, `unexpected argument "extra"`},
		{[]string{"run", "--log-level", "verbose"}, `unknown log level "verbose"`},
		{[]string{"run", "--log-format", "xml"}, `unknown log format "xml"`},
		{[]string{"run", "extra"}, `unexpected argument "extra"`},
		{[]string{"trace", "--control", none}, "--port and --dst (or --frame) are required"},
		{[]string{"trace", "--port", "web", "--control", none}, "--port and --dst (or --frame) are required"},
		{[]string{"apply", "--control", none}, "--config FILE is required"},
		{[]string{"ports", "--control", none, "--config", cfg}, "--control and --config both name an instance: give one"},
		{[]string{"fdb", "--control", none, "--config", cfg}, "--control and --config both name an instance"},
		{[]string{"top", "--control", none, "--config", cfg}, "--control and --config both name an instance"},
		{[]string{"capture", "--control", none, "--config", cfg, "-w", "-"}, "--control and --config both name an instance"},
		{[]string{"endpoint", "rm", "web", "--control", none, "--config", cfg}, "--control and --config both name an instance"},
		{[]string{"top", "-d", "0", "--control", none}, "-d 0: the interval is at least 0.1 seconds"},
		{[]string{"top", "-n", "-1", "--control", none}, "-n -1: want a positive number of refreshes"},
		{[]string{"ui", "--listen", "0.0.0.0:9900", "--control", none}, `--listen "0.0.0.0:9900": the page is served on loopback only`},
		{[]string{"ui", "--listen", "nonsense", "--control", none}, `--listen "nonsense"`},
		// A missing --config would fail (exit 1) if the check came after
		// loading the plan.
		{[]string{"run", "--config", cfg, "--poll-threads", "-1"}, "--poll-threads -1: want 0 (one per CPU) or more"},
		{[]string{"fdb", "--watch", "--port", "x", "--control", none}, "--port and --mac do not apply to --watch"},
		{[]string{"fdb", "--watch", "--mac", "02:00:00:00:00:01", "--control", none}, "--port and --mac do not apply to --watch"},
		{[]string{"capture", "--control", none}, "-w FILE|- is required"},
		{[]string{"capture", "--control", none, "-c", "-3", "-w", "-"}, "-c -3: want a positive number of frames"},
		{[]string{"endpoint", "bogus"}, `unknown subcommand "bogus"`},
		{[]string{"network"}, "want a subcommand: add, rm or ls"},
		{[]string{"endpoint", "rm", "--control", none}, "want one NAME"},
	} {
		code, out, errOut := runCLI(t, tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Empty(t, out, "%v", tc.args)
		require.Contains(t, errOut, tc.msg, "%v", tc.args)
		require.Contains(t, errOut, "usage: uswitch "+tc.args[0], "%v", tc.args)
		require.NotContains(t, errOut, "uswitch: ", "%v: a usage mistake is not reported as a runtime error", tc.args)
	}
}

func TestDispatchNoInstance(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "x.sock")
	code, out, errOut := runCLI(t, "ports", "--control", sock)
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Equal(t, "uswitch: no uswitch instance is running (control socket "+sock+": connect: no such file or directory)\n", errOut)
	for _, cmd := range []string{"conntrack", "rules"} {
		code, out, errOut = runCLI(t, cmd, "--control", sock)
		require.Equal(t, 1, code, cmd)
		require.Empty(t, out, cmd)
		require.True(t, strings.HasPrefix(errOut, "uswitch: no uswitch instance is running"), errOut)
	}
}

// instance is a datapath with one network "front", two in-memory ports,
// web and api, and the router's gw/front, whose control API is served on a
// temporary socket.
type instance struct {
	dp    *datapath.Datapath
	ports map[string]*tap.Mem
	sock  string
}

func startInstance(t *testing.T) *instance {
	t.Helper()
	return startInstancePlan(t, instancePlan())
}

// instancePlan is the plan of startInstance.
func instancePlan() *config.Plan {
	return &config.Plan{
		Name:     "test",
		Defaults: config.Defaults{FDBAgeing: clock.Duration(300 * time.Second)},
		Networks: []config.Network{{
			Name: "front", Subnet: netip.MustParsePrefix("172.20.0.0/24"), Gateway: netip.MustParseAddr("172.20.0.1"),
			GatewayMAC: packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x01}, MTU: 1500,
		}},
	}
}

// startInstancePlan is startInstance over plan; when the plan has an
// uplink, its in-memory device is ports["uplink"].
func startInstancePlan(t *testing.T, plan *config.Plan) *instance {
	t.Helper()
	in := &instance{ports: map[string]*tap.Mem{}, sock: filepath.Join(t.TempDir(), "test.sock")}
	dp, err := datapath.New(plan, &clock.Fake{}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	in.dp = dp
	t.Cleanup(func() { in.dp.Close() })
	for _, name := range []string{"web", "api"} {
		m := tap.NewMem(64)
		require.NoError(t, in.dp.Attach("front", vswitch.PortConfig{Name: name}, m))
		in.ports[name] = m
	}
	if plan.Uplink != nil {
		m := tap.NewMem(64)
		require.NoError(t, in.dp.AttachUplink(m))
		in.ports["uplink"] = m
	}
	l, err := control.Listen(in.sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, l, control.NewHandler(in.dp)) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return in
}

// send has port send a broadcast ARP request from src (for an address
// nobody has, so the gateway stays silent), waits until the switch has
// flooded it and checks that it learned src.
func (in *instance) send(t *testing.T, port string, src packet.MAC) {
	t.Helper()
	sw := in.dp.Network("front")
	tx := func() (n uint64) {
		for _, p := range sw.Ports() {
			n += p.Stats.TxPackets.Load()
		}
		return n
	}
	want := tx() + uint64(len(sw.Ports())-1) // flooded to every other port
	in.inject(t, port, src)
	require.Eventually(t, func() bool { return tx() == want }, 5*time.Second, time.Millisecond)
	require.Condition(t, func() bool {
		for _, e := range sw.Entries() {
			if e.MAC == src && e.Port == port {
				return true
			}
		}
		return false
	}, "learned")
}

func (in *instance) inject(t *testing.T, port string, src packet.MAC) {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: src[:], DstMAC: packet.Broadcast[:], EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: src[:], SourceProtAddress: net.IPv4(172, 20, 0, 10).To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: net.IPv4(172, 20, 0, 99).To4(), // not the gateway
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp))
	in.ports[port].Inject(buf.Bytes())
}

func TestFDBCommand(t *testing.T) {
	in := startInstance(t)
	in.send(t, "web", macWeb)
	in.send(t, "api", macAPI)

	var out bytes.Buffer
	require.NoError(t, fdb(context.Background(), []string{"--control", in.sock}, &out))
	require.Equal(t, lines(
		"MAC                VLAN  PORT      NETWORK  FLAGS     AGE",
		"02:42:ac:14:00:0b     -  api       front    learned  0.0s",
		"02:42:ac:14:00:01     -  gw/front  front    static      -",
		"02:42:ac:14:00:0a     -  web       front    learned  0.0s",
	), out.String())

	out.Reset()
	require.NoError(t, fdb(context.Background(), []string{"--control", in.sock, "--network", "front", "-o", "json"}, &out))
	var entries []control.FDBEntry
	require.NoError(t, json.Unmarshal(out.Bytes(), &entries))
	require.Len(t, entries, 3)
	require.Equal(t, macAPI, entries[0].MAC)

	err := fdb(context.Background(), []string{"--control", in.sock, "--network", "nope"}, &out)
	require.EqualError(t, err, `no network "nope"`)

	// Filtered on the instance, like bridge fdb show brport P / an address.
	out.Reset()
	require.NoError(t, fdb(context.Background(), []string{"--control", in.sock, "--network", "front", "--port", "web"}, &out))
	require.Equal(t, lines(
		"MAC                VLAN  PORT  FLAGS     AGE",
		"02:42:ac:14:00:0a     -  web   learned  0.0s",
	), out.String())
	out.Reset()
	require.NoError(t, fdb(context.Background(), []string{"--control", in.sock, "--mac", "02:42:ac:14:00:0b", "-o", "json"}, &out))
	require.NoError(t, json.Unmarshal(out.Bytes(), &entries))
	require.Equal(t, []control.FDBEntry{{Network: "front", MAC: macAPI, Port: "api"}}, entries)
	out.Reset()
	require.NoError(t, fdb(context.Background(), []string{"--control", in.sock, "--mac", "02:42:ac:14:00:99", "-o", "json"}, &out))
	require.Equal(t, "[]\n", out.String())
	require.EqualError(t, fdb(context.Background(), []string{"--control", in.sock, "--port", "nope"}, &out), `no port "nope"`)
	require.ErrorContains(t, fdb(context.Background(), []string{"--control", in.sock, "--port", "web", "--watch"}, &out), "do not apply to --watch")
}

func TestPortsCommand(t *testing.T) {
	in := startInstance(t)
	in.send(t, "web", macWeb)
	var out bytes.Buffer
	require.NoError(t, ports(context.Background(), []string{"--control", in.sock}, &out))
	require.Equal(t, lines(
		"PORT      NETWORK  RX-PKTS  RX-BYTES  TX-PKTS  TX-BYTES  DROPS",
		"gw/front  front          0         0        1        60  -",
		"web       front          1        60        0         0  -",
		"api       front          0         0        1        60  -",
	), out.String())
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch runs `uswitch fdb --watch` with extra args until it has printed a
// line, sending a frame from a new MAC every few milliseconds (the watch
// subscribes asynchronously), and returns the first line.
func watch(t *testing.T, in *instance, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- fdb(ctx, append([]string{"--control", in.sock, "--watch"}, extra...), &out) }()
	deadline := time.Now().Add(5 * time.Second)
	for i := byte(1); out.String() == "" && time.Now().Before(deadline); i++ {
		in.inject(t, "web", packet.MAC{0x02, 0, 0, 0, 0, i})
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	require.NoError(t, <-done, "an interrupted watch is not an error")
	first, _, _ := strings.Cut(out.String(), "\n")
	return first
}

func TestFDBWatchCommand(t *testing.T) {
	in := startInstance(t)
	require.Regexp(t, `^learned 02:00:00:00:00:[0-9a-f]{2} dev web network front$`, watch(t, in))

	line := watch(t, in, "-o", "json")
	var e vswitch.Event
	require.NoError(t, json.Unmarshal([]byte(line), &e), line)
	require.Equal(t, vswitch.Learned, e.Type)
	require.Equal(t, "web", e.Port)
}

func TestPrintFDBEvents(t *testing.T) {
	stream := `{"event":"learned","network":"front","mac":"02:42:ac:14:00:0a","vlan":0,"port":"web","time":"2026-01-02T03:04:05Z"}
{"event":"moved","network":"front","mac":"02:42:ac:14:00:0a","vlan":0,"port":"api","from":"web","time":"2026-01-02T03:04:06Z"}
`
	var out bytes.Buffer
	err := printFDBEvents(context.Background(), strings.NewReader(stream), &out, formatTable)
	require.EqualError(t, err, "watch: the instance closed the stream (it is shutting down)")
	require.Equal(t, lines(
		"learned 02:42:ac:14:00:0a dev web network front",
		"moved 02:42:ac:14:00:0a dev api network front (was web)",
	), out.String())

	out.Reset()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, printFDBEvents(ctx, strings.NewReader(stream), &out, formatJSON), "interrupted")
	require.Equal(t, stream, out.String())

	err = printFDBEvents(context.Background(), strings.NewReader("nonsense\n"), &out, formatTable)
	require.ErrorContains(t, err, `watch: bad event "nonsense"`)
}
