package ui

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/tap"
)

// page runs the embedded default topology over in-memory ports, its
// control API on a socket and the page over it, and returns the page's URL
// and the ports.
func page(t *testing.T) (string, *config.Plan, map[string]*tap.Mem) {
	t.Helper()
	plan, _ := config.Default()
	clk := clock.NewCoarse(time.Millisecond)
	t.Cleanup(clk.Stop)
	dp, err := datapath.New(plan, clk, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { dp.Close() })
	mems := map[string]*tap.Mem{}
	for _, ep := range plan.Endpoints {
		for _, ifc := range ep.Interfaces {
			mems[ifc.Port] = tap.NewMem(256)
			require.NoError(t, dp.AttachEndpoint(ifc.Port, mems[ifc.Port]))
		}
	}
	mems["uplink"] = tap.NewMem(256)
	require.NoError(t, dp.AttachUplink(mems["uplink"]))
	stop := make(chan struct{})
	for _, m := range mems { // the endpoints read what they are sent, as a kernel would
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					m.Recv(50 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop) })
	dp.Start(time.Second)
	sock := filepath.Join(t.TempDir(), "ui.sock")
	l, err := control.Listen(sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, l, control.NewHandler(dp)) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(Handler(control.NewClient(sock)))
	t.Cleanup(srv.Close)
	return srv.URL, plan, mems
}

// arp is an ARP request from mac/ip for an address nobody has.
func arp(t *testing.T, mac packet.MAC, ip [4]byte) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true},
		&layers.Ethernet{SrcMAC: mac[:], DstMAC: packet.Broadcast[:], EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: mac[:], SourceProtAddress: ip[:], DstHwAddress: make([]byte, 6),
			DstProtAddress: []byte{ip[0], ip[1], ip[2], 250}}))
	return buf.Bytes()
}

// browser starts headless Chromium (the Debian package chromium; `make
// test` installs it when missing).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the page is tested in headless Chromium: install the chromium package (make test does): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// text evaluates a JavaScript expression giving a string.
func text(t *testing.T, ctx context.Context, expr string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(t, err)
	return s
}

// eventually polls a page expression until cond holds, within d.
func eventually(t *testing.T, ctx context.Context, d time.Duration, expr string, cond func(string) bool, what string) string {
	t.Helper()
	var s string
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if s = text(t, ctx, expr); cond(s) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last: %q)", what, d, s)
	return ""
}

// TestPage: in a real headless browser the page draws every endpoint and
// network of the default topology, a link's rate rises while frames flow
// on it, a network's MAC table shows a newly learned MAC within 2 s, and
// the trace form draws the path on the picture.
func TestPage(t *testing.T) {
	url, plan, mems := page(t)
	ctx := browser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("node-router"))))

	labels := text(t, ctx, `[...document.querySelectorAll("#topo g.node text")].map(e => e.textContent).join("|")`)
	for _, n := range plan.Networks {
		require.Contains(t, "|"+labels+"|", "|"+n.Name+"|", "network %s drawn", n.Name)
	}
	for _, ep := range plan.Endpoints {
		require.Contains(t, "|"+labels+"|", "|"+ep.Name+"|", "endpoint %s drawn", ep.Name)
	}
	require.Contains(t, labels, "uplink")

	// a transfer on demo-a's link: its rate rises
	a := plan.Endpoints[0].Interfaces[0]
	stop := make(chan struct{})
	flowing := make(chan struct{})
	go func() {
		defer close(flowing)
		f := arp(t, a.MAC, a.IP.As4())
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				mems[a.Port].Inject(f)
			}
		}
	}()
	eventually(t, ctx, 5*time.Second, `document.getElementById("rate-link-`+a.Port+`").textContent`,
		func(s string) bool { return strings.HasPrefix(s, a.Port+": ") && !strings.HasSuffix(s, ": 0 b/s") }, "demo-a's rate rises")
	close(stop)
	<-flowing

	// the MAC table of bridge shows demo-b once it has sent a frame
	b := plan.Endpoints[1].Interfaces[0]
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#node-net-"+b.Network+" rect"))))
	eventually(t, ctx, 2*time.Second, `document.getElementById("panel-title").textContent`,
		func(s string) bool { return strings.Contains(s, b.Network) }, "the MAC table panel opens")
	require.NotContains(t, text(t, ctx, `document.getElementById("panel").textContent`), b.MAC.String())
	mems[b.Port].Inject(arp(t, b.MAC, b.IP.As4()))
	learned := time.Now()
	eventually(t, ctx, 2*time.Second, `document.getElementById("panel").textContent`,
		func(s string) bool { return strings.Contains(s, b.MAC.String()) }, "demo-b's MAC appears")
	t.Logf("MAC shown %v after it was learned", time.Since(learned).Round(time.Millisecond))

	// the trace form: demo-a to demo-db crosses demo-a's link and the gateway of bridge
	db := plan.Endpoints[len(plan.Endpoints)-1].Interfaces[0]
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("trace-port"), a.Port),
		chromedp.SetValue(chromedp.ID("trace-dst"), db.IP.String()),
		chromedp.Click(chromedp.ID("trace-go"))))
	out := eventually(t, ctx, 5*time.Second, `document.getElementById("trace-out").textContent`,
		func(s string) bool { return strings.Contains(s, "verdict") }, "the trace answers")
	t.Log(out[:min(len(out), 200)])
	path := text(t, ctx, `[...document.querySelectorAll(".link.path")].map(e => e.id).join(",")`)
	require.Contains(t, path, "link-"+a.Port)
	require.Contains(t, path, "link-gw_"+a.Network)

	if dst := os.Getenv("USWITCH_UI_SCREENSHOT"); dst != "" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(dst, png, 0o644))
	}
}

// TestReadOnly: the page proxies only GETs of the read-only calls.
func TestReadOnly(t *testing.T) {
	url, _, _ := page(t)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/api/v1/ports", http.StatusOK},
		{http.MethodGet, "/api/v1/trace?port=demo-a&dst=10.250.0.1", http.StatusOK},
		{http.MethodGet, "/api/v1/trace?port=nope&dst=10.250.0.1", http.StatusBadRequest},
		{http.MethodPost, "/api/v1/endpoints", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/apply", http.StatusNotFound},
		{http.MethodGet, "/api/v1/fdb?watch=1", http.StatusNotFound},
		{http.MethodGet, "/api/v1/trace?live=1", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusOK},
	} {
		req, err := http.NewRequest(c.method, url+c.path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, c.code, resp.StatusCode, "%s %s", c.method, c.path)
	}
}
