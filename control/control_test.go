package control

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/packet"
	vswitch "github.com/uswitch-dev/uswitch/switch"
	"github.com/uswitch-dev/uswitch/tap"
)

var (
	gwFront = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x01}
	gwBack  = packet.MAC{0x02, 0x42, 0xac, 0x15, 0x00, 0x01}
	macWeb  = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x0a}
	macAPI  = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x0b}
	macDB   = packet.MAC{0x02, 0x42, 0xac, 0x14, 0x00, 0x0c}

	macUplink = packet.MAC{0x02, 0x42, 0x0a, 0xfa, 0x00, 0x02}
)

// lab is a datapath with two networks: "front" with three in-memory ports
// (web, api, db) and "back" with none. Each also has the router's gateway
// port, gw/front and gw/back, with a static FDB entry.
type lab struct {
	dp    *datapath.Datapath
	clk   *clock.Fake
	ports map[string]*tap.Mem
}

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabPlan(t, labPlan())
}

// labPlan is the plan of newLab: networks front and back, no uplink.
func labPlan() *config.Plan {
	return &config.Plan{
		Name:     "test",
		Defaults: config.Defaults{FDBAgeing: clock.Duration(300 * time.Second)},
		Networks: []config.Network{
			network("front", "172.20.0.0/24", gwFront),
			network("back", "172.21.0.0/24", gwBack),
		},
	}
}

// newNATLab is newLab with an uplink (10.250.0.2/30, the host side
// 10.250.0.1, its in-memory device in ports["uplink"]), front masqueraded
// to it, web (172.20.0.10) publishing 8080:80/tcp and a user rule at line
// 42 (forward: drop udp to port 9999), so that the rule set has user and
// built-in rules in most hooks.
func newNATLab(t *testing.T) *lab {
	t.Helper()
	plan := labPlan()
	plan.Uplink = &config.Uplink{
		Address:     netip.MustParsePrefix("10.250.0.2/30"),
		HostAddress: netip.MustParsePrefix("10.250.0.1/30"),
		MAC:         macUplink,
	}
	plan.Networks[0].Masquerade = true
	web := netip.MustParseAddr("172.20.0.10")
	plan.Endpoints = []config.Endpoint{{
		Name: "web", Mode: config.ModeBridge,
		Interfaces: []config.Interface{{Name: "eth0", Port: "web", Network: "front", IP: web,
			Prefix: netip.PrefixFrom(web, 24), MAC: macWeb, Gateway: plan.Networks[0].Gateway, MTU: 1500}},
		Publish: []config.Publish{{HostPort: 8080, ContainerPort: 80, Proto: "tcp"}},
	}}
	plan.Rules = []config.Rule{{Hook: "forward", Proto: "udp", Dport: [2]uint16{9999, 9999}, Action: "drop", Line: 42}}
	l := newLabPlan(t, plan)
	up := tap.NewMem(64)
	require.NoError(t, l.dp.AttachUplink(up))
	l.ports["uplink"] = up
	return l
}

// newLabPlan runs a datapath over plan with three in-memory ports on front:
// web, api and db.
func newLabPlan(t *testing.T, plan *config.Plan) *lab {
	t.Helper()
	l := &lab{clk: &clock.Fake{}, ports: map[string]*tap.Mem{}}
	dp, err := datapath.New(plan, l.clk, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	l.dp = dp
	t.Cleanup(func() { l.dp.Close() })
	for _, name := range []string{"web", "api", "db"} {
		m := tap.NewMem(64)
		require.NoError(t, l.dp.Attach("front", vswitch.PortConfig{Name: name}, m))
		l.ports[name] = m
	}
	return l
}

func network(name, subnet string, gwMAC packet.MAC) config.Network {
	p := netip.MustParsePrefix(subnet)
	return config.Network{Name: name, Subnet: p, Gateway: p.Addr().Next(), GatewayMAC: gwMAC, MTU: 1500}
}

// arpRequest is a broadcast ARP request from src, built with gopacket.
func arpRequest(t *testing.T, src packet.MAC, srcIP, dstIP net.IP) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: src[:], DstMAC: packet.Broadcast[:], EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: src[:], SourceProtAddress: srcIP.To4(),
		DstHwAddress: make([]byte, 6), DstProtAddress: dstIP.To4(),
	}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp))
	return buf.Bytes()
}

// udpFrame is a unicast IPv4/UDP frame from src to dst, built with gopacket.
func udpFrame(t *testing.T, src, dst packet.MAC, payload string) []byte {
	t.Helper()
	return udp4(t, src, dst, "172.20.0.10:40000", "172.20.0.11:53", payload)
}

// udp4 is a unicast IPv4/UDP frame from src to dst MAC between two
// "ip:port" addresses, built with gopacket.
func udp4(t *testing.T, src, dst packet.MAC, from, to string, payload string) []byte {
	t.Helper()
	f, d := netip.MustParseAddrPort(from), netip.MustParseAddrPort(to)
	eth := &layers.Ethernet{SrcMAC: src[:], DstMAC: dst[:], EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: f.Addr().AsSlice(), DstIP: d.Addr().AsSlice()}
	udp := &layers.UDP{SrcPort: layers.UDPPort(f.Port()), DstPort: layers.UDPPort(d.Port())}
	require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	require.NoError(t, gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(payload)))
	return buf.Bytes()
}

// learn has every port of the lab send one ARP request (for an address
// nobody has, so the gateway stays silent) and waits until the switch has
// learned all three MACs.
func (l *lab) learn(t *testing.T) {
	t.Helper()
	l.ports["web"].Inject(arpRequest(t, macWeb, net.IPv4(172, 20, 0, 10), net.IPv4(172, 20, 0, 99)))
	l.ports["api"].Inject(arpRequest(t, macAPI, net.IPv4(172, 20, 0, 11), net.IPv4(172, 20, 0, 99)))
	l.ports["db"].Inject(arpRequest(t, macDB, net.IPv4(172, 20, 0, 12), net.IPv4(172, 20, 0, 99)))
	sw := l.dp.Network("front")
	require.Eventually(t, func() bool { return learned(sw.Entries()) == 3 }, 5*time.Second, time.Millisecond)
	// A frame is learned before it is flooded: wait for the floods too,
	// each to the three other ports of front.
	require.Eventually(t, func() bool { return txTotal(sw) == 9 }, 5*time.Second, time.Millisecond)
}

// txTotal is the frames sent by every port of sw.
func txTotal(sw *vswitch.Switch) uint64 {
	var n uint64
	for _, p := range sw.Ports() {
		n += p.Stats.TxPackets.Load()
	}
	return n
}

// learned counts the dynamic entries of a switch's FDB.
func learned(es []vswitch.Entry) int {
	n := 0
	for _, e := range es {
		if !e.Static {
			n++
		}
	}
	return n
}

// split separates API FDB rows into learned and static ones.
func split(es []FDBEntry) (dynamic, static []FDBEntry) {
	for _, e := range es {
		if e.Static {
			static = append(static, e)
		} else {
			dynamic = append(dynamic, e)
		}
	}
	return dynamic, static
}

// waitPort waits until the counters of the named port satisfy ok: the
// datapath's reader goroutines switch injected frames asynchronously.
func (l *lab) waitPort(t *testing.T, name string, ok func(datapath.PortInfo) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, p := range l.dp.Ports() {
			if p.Name == name && ok(p) {
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond, "port %s", name)
}

// serve serves the control API over b on a unix socket in a temporary
// directory and returns a client of it.
func serve(t *testing.T, b Backend) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	l, err := Listen(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, NewHandler(b)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return NewClient(path)
}

func TestFDB(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	l.clk.Advance(1500 * time.Millisecond)
	c := serve(t, l.dp)
	ctx := context.Background()

	var all []FDBEntry
	require.NoError(t, c.GetJSON(ctx, "/v1/fdb", &all))
	dynamic, static := split(all)
	require.Equal(t, []FDBEntry{
		{Network: "front", MAC: macAPI, Port: "api", Age: clock.Duration(1500 * time.Millisecond)},
		{Network: "front", MAC: macDB, Port: "db", Age: clock.Duration(1500 * time.Millisecond)},
		{Network: "front", MAC: macWeb, Port: "web", Age: clock.Duration(1500 * time.Millisecond)},
	}, dynamic)
	require.Len(t, static, 2)
	require.Equal(t, [2]any{"gw/front", gwFront}, [2]any{static[0].Port, static[0].MAC})
	require.Equal(t, [2]any{"gw/back", gwBack}, [2]any{static[1].Port, static[1].MAC})
	require.Equal(t, "back", static[1].Network)

	var front []FDBEntry
	require.NoError(t, c.GetJSON(ctx, "/v1/fdb?network=front", &front))
	require.Equal(t, all[:4], front)

	var back []FDBEntry
	require.NoError(t, c.GetJSON(ctx, "/v1/fdb?network=back", &back))
	require.Equal(t, all[4:], back)

	err := c.GetJSON(ctx, "/v1/fdb?network=nope", &back)
	require.EqualError(t, err, `no network "nope"`)
}

func TestFDBJSONShape(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	c := serve(t, l.dp)
	var raw []map[string]any
	require.NoError(t, c.GetJSON(context.Background(), "/v1/fdb", &raw))
	require.Len(t, raw, 5)
	require.Equal(t, map[string]any{
		"network": "front", "mac": "02:42:ac:14:00:0b", "vlan": 0.0,
		"port": "api", "static": false, "age": "0s",
	}, raw[0])
}

func TestPorts(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	// web -> api, known unicast: only api receives it.
	frame := udpFrame(t, macWeb, macAPI, "hello")
	l.ports["web"].Inject(frame)
	// Wait on the egress side: a frame is counted received before it is
	// forwarded.
	l.waitPort(t, "api", func(p datapath.PortInfo) bool { return p.TxPackets == 3 })
	// a frame with a multicast source is dropped and counted.
	bad := udpFrame(t, packet.MAC{0x01, 0, 0x5e, 0, 0, 1}, macAPI, "bad")
	l.ports["db"].Inject(bad)
	l.waitPort(t, "db", func(p datapath.PortInfo) bool { return p.Drops["bad-src-mac"] == 1 })

	c := serve(t, l.dp)
	var ports []datapath.PortInfo
	require.NoError(t, c.GetJSON(context.Background(), "/v1/ports", &ports))
	byName := map[string]datapath.PortInfo{}
	for _, p := range ports {
		byName[p.Name] = p
	}
	require.Len(t, byName, 5)
	for _, name := range []string{"web", "api", "db", "gw/front"} {
		require.Equal(t, "front", byName[name].Network, name)
	}
	require.Equal(t, "back", byName["gw/back"].Network)
	arpLen := uint64(len(arpRequest(t, macWeb, net.IPv4(0, 0, 0, 0), net.IPv4(0, 0, 0, 0))))
	web, api, db := byName["web"], byName["api"], byName["db"]
	require.Equal(t, uint64(2), web.RxPackets)
	require.Equal(t, arpLen+uint64(len(frame)), web.RxBytes)
	// api got the two floods of web and db plus the unicast.
	require.Equal(t, uint64(3), api.TxPackets)
	require.Equal(t, 2*arpLen+uint64(len(frame)), api.TxBytes)
	require.Equal(t, uint64(2), db.RxPackets)
	require.Equal(t, map[string]uint64{"bad-src-mac": 1}, db.Drops)
	require.Empty(t, web.Drops)
}

func TestWatch(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body, err := c.Stream(ctx, "/v1/fdb?watch=1")
	require.NoError(t, err)
	defer body.Close()
	events := make(chan vswitch.Event)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			var e vswitch.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
	}()
	next := func() vswitch.Event {
		t.Helper()
		select {
		case e, ok := <-events:
			require.True(t, ok, "stream ended")
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return vswitch.Event{}
	}

	// Stream returns once the server has subscribed, so this frame's
	// learning is seen.
	l.ports["web"].Inject(arpRequest(t, macWeb, net.IPv4(172, 20, 0, 10), net.IPv4(172, 20, 0, 99)))
	e := next()
	require.Equal(t, vswitch.Learned, e.Type)
	require.Equal(t, "front", e.Network)
	require.Equal(t, macWeb, e.MAC)
	require.Equal(t, "web", e.Port)

	// The same MAC on another port is a move.
	l.ports["db"].Inject(arpRequest(t, macWeb, net.IPv4(172, 20, 0, 10), net.IPv4(172, 20, 0, 99)))
	e = next()
	require.Equal(t, vswitch.Moved, e.Type)
	require.Equal(t, "db", e.Port)
	require.Equal(t, "web", e.From)

	// Ageing out.
	l.clk.Advance(301 * time.Second)
	l.dp.Network("front").Expire()
	e = next()
	require.Equal(t, vswitch.Aged, e.Type)
	require.Equal(t, macWeb, e.MAC)
}

func TestWatchOneNetwork(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body, err := c.Stream(ctx, "/v1/fdb?network=back&watch=true")
	require.NoError(t, err)
	defer body.Close()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	l.learn(t) // all on front
	select {
	case line := <-lines:
		t.Fatalf("event of another network: %s", line)
	case <-time.After(100 * time.Millisecond):
	}

	_, err = c.Stream(ctx, "/v1/fdb?network=nope&watch=1")
	require.EqualError(t, err, `no network "nope"`)
}

func TestWatchEndsOnShutdown(t *testing.T) {
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewHandler(l.dp)) }()

	body, err := NewClient(path).Stream(context.Background(), "/v1/fdb?watch=1")
	require.NoError(t, err)
	defer body.Close()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return with a watch stream open")
	}
	_, err = io.ReadAll(body)
	require.NoError(t, err, "the stream ends cleanly")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "the socket file is removed")
}

func TestMetrics(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	l.ports["db"].Inject(udpFrame(t, packet.MAC{0x01, 0, 0x5e, 0, 0, 1}, macAPI, "bad"))
	l.waitPort(t, "db", func(p datapath.PortInfo) bool { return p.Drops["bad-src-mac"] == 1 })
	c := serve(t, l.dp)

	body, err := c.Stream(context.Background(), "/metrics")
	require.NoError(t, err)
	b, err := io.ReadAll(body)
	body.Close()
	require.NoError(t, err)
	lines := strings.Split(string(b), "\n")
	for _, want := range []string{
		"# TYPE uswitch_port_rx_packets_total counter",
		`uswitch_port_rx_packets_total{network="front",port="web"} 1`,
		`uswitch_port_rx_bytes_total{network="front",port="web"} 60`, // padded to the minimum frame
		`uswitch_port_tx_packets_total{network="front",port="web"} 2`,
		`uswitch_port_tx_bytes_total{network="front",port="web"} 120`,
		`uswitch_port_rx_packets_total{network="front",port="db"} 2`,
		`uswitch_port_drops_total{network="front",port="db",reason="bad-src-mac"} 1`,
		"# TYPE uswitch_fdb_entries gauge",
		`uswitch_fdb_entries{network="front"} 4`, // 3 learned, the gateway's static one
		`uswitch_fdb_entries{network="back"} 1`,
		`uswitch_fdb_learn_refused_total{network="front"} 0`,
		"# TYPE go_goroutines gauge",
	} {
		require.True(t, slices.Contains(lines, want), "/metrics lacks the line %q", want)
	}
}

// rawGet does a request with the standard library only, to check status
// codes and bodies exactly.
func rawGet(t *testing.T, c *Client, method, path string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://uswitch"+path, nil)
	require.NoError(t, err)
	resp, err := c.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func TestErrors(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	for _, tc := range []struct {
		method, path string
		code         int
		msg          string
	}{
		{"GET", "/v1/nope", 404, "no such endpoint: /v1/nope"},
		{"GET", "/", 404, "no such endpoint: /"},
		{"GET", "/v1/fdb?network=nope", 404, `no network "nope"`},
		{"POST", "/v1/fdb", 405, "method POST not allowed on /v1/fdb (use GET)"},
		{"DELETE", "/v1/ports", 405, "method DELETE not allowed on /v1/ports (use GET)"},
		{"PUT", "/metrics", 405, "method PUT not allowed on /metrics (use GET)"},
		{"GET", "/v1/fdb?watch=maybe", 400, `query parameter watch="maybe": want 1, 0, true or false`},
		{"GET", "/v1/fdb?netwrok=front", 400, `unknown query parameter "netwrok" (/v1/fdb takes network, port, mac, watch)`},
		{"GET", "/v1/fdb?network=a&network=b", 400, `query parameter "network" given 2 times`},
		{"GET", "/v1/fdb?network=%zz", 400, `malformed query: invalid URL escape "%zz"`},
		{"GET", "/v1/ports?x=1", 400, `unknown query parameter "x": /v1/ports takes none`},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, hdr, body := rawGet(t, c, tc.method, tc.path)
			require.Equal(t, tc.code, code)
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
			var eb errorBody
			require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
			require.Equal(t, tc.msg, eb.Error)
			if code == 405 {
				require.Equal(t, "GET", hdr.Get("Allow"))
			}
		})
	}
	// The client reports the server's message.
	var v any
	err := c.GetJSON(context.Background(), "/v1/fdb?watch=maybe", &v)
	require.EqualError(t, err, `query parameter watch="maybe": want 1, 0, true or false`)
	// with the status, for callers that tell refusals from failures.
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusBadRequest, se.Status)
}

func TestSocketMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "uswitch", "lab.sock")
	l, err := Listen(path)
	require.NoError(t, err)
	defer l.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.ModeSocket|0o600, fi.Mode())
	di, err := os.Stat(filepath.Dir(path))
	require.NoError(t, err)
	require.True(t, di.IsDir())
}

func TestSecondListenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.sock")
	l, err := Listen(path)
	require.NoError(t, err)
	defer l.Close()
	_, err = Listen(path)
	require.EqualError(t, err, "another instance is listening on "+path)
	// The live socket is untouched.
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	c.Close()
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.sock")
	// A socket file nobody listens on, as a crashed instance leaves.
	stale, err := net.Listen("unix", path)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())
	_, err = os.Stat(path)
	require.NoError(t, err)

	l, err := Listen(path)
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	c.Close()
}

func TestListenRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.sock")
	require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o644))
	_, err := Listen(path)
	require.ErrorContains(t, err, "file exists and is not a socket")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b))
}

func TestClientNoInstance(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "x.sock")
	var v any
	err := NewClient(missing).GetJSON(context.Background(), "/v1/fdb", &v)
	require.EqualError(t, err, "no uswitch instance is running (control socket "+missing+": connect: no such file or directory)")
	require.ErrorIs(t, err, ErrNotRunning)

	stalePath := filepath.Join(dir, "stale.sock")
	stale, err := net.Listen("unix", stalePath)
	require.NoError(t, err)
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())
	_, err = NewClient(stalePath).Stream(context.Background(), "/v1/fdb?watch=1")
	require.EqualError(t, err, "no uswitch instance is running (control socket "+stalePath+": connect: connection refused)")
	require.ErrorIs(t, err, ErrNotRunning)
	require.True(t, strings.HasPrefix(err.Error(), "no uswitch instance is running"))
}

func TestNeighAndRoutes(t *testing.T) {
	l := newLab(t)
	// web asks for its gateway: the router answers and learns web.
	l.ports["web"].Inject(arpRequest(t, macWeb, net.IPv4(172, 20, 0, 10), net.IPv4(172, 20, 0, 1)))
	c := serve(t, l.dp)
	var neigh []NeighEntry
	require.Eventually(t, func() bool {
		require.NoError(t, c.GetJSON(context.Background(), "/v1/neigh", &neigh))
		return len(neigh) == 1
	}, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, "gw/front", neigh[0].Port)
	require.Equal(t, "172.20.0.10", neigh[0].IP.String())
	require.Equal(t, macWeb, *neigh[0].MAC)
	require.Equal(t, "REACHABLE", neigh[0].State.String())

	var raw []map[string]any
	require.NoError(t, c.GetJSON(context.Background(), "/v1/routes", &raw))
	require.Len(t, raw, 2)
	require.Equal(t, "172.20.0.0/24", raw[0]["dst"])
	require.Equal(t, "gw/front", raw[0]["dev"])
	require.Equal(t, "172.20.0.1", raw[0]["prefsrc"])

	var v any
	require.ErrorContains(t, c.GetJSON(context.Background(), "/v1/neigh?x=1", &v), "unknown query parameter")
}
