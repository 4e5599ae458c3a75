package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/packet"
)

// readPcap decodes a pcap stream until it ends and returns its frames.
func readPcap(t *testing.T, r io.Reader) [][]byte {
	t.Helper()
	pr, err := pcapgo.NewReader(r)
	require.NoError(t, err)
	require.Equal(t, layers.LinkTypeEthernet, pr.LinkType())
	var out [][]byte
	var last time.Time
	for {
		data, ci, err := pr.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		require.False(t, ci.Timestamp.Before(last), "timestamps never go backwards")
		require.WithinDuration(t, time.Now(), ci.Timestamp, time.Minute)
		last = ci.Timestamp
		out = append(out, data)
	}
}

// TestCapturePort captures one port: it sees the frames it sends and
// receives, and nothing else, and the stream ends after count frames.
func TestCapturePort(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	c := serve(t, l.dp)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", "http://uswitch/v1/capture?port=api&count=0", nil)
	require.NoError(t, err)
	resp, err := c.http.Do(req)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "application/vnd.tcpdump.pcap", resp.Header.Get("Content-Type"))
	require.Empty(t, readPcap(t, io.LimitReader(resp.Body, 24)), "the pcap header comes at once")
	cancel()
	resp.Body.Close()

	body, err := c.Stream(context.Background(), "/v1/capture?port=api&count=3")
	require.NoError(t, err)
	defer body.Close()
	// Stream returns once the capture is subscribed: what follows is seen.
	toAPI := udpFrame(t, macWeb, macAPI, "one")
	fromAPI := udp4(t, macAPI, macWeb, "172.20.0.11:53", "172.20.0.10:40000", "two")
	webToDB := udp4(t, macWeb, macDB, "172.20.0.10:40000", "172.20.0.12:53", "not api")
	dbToAPI := udp4(t, macDB, macAPI, "172.20.0.12:53", "172.20.0.11:53", "three")
	send := func(from string, f []byte, to string, tx uint64) {
		l.ports[from].Inject(f)
		l.waitPort(t, to, func(p datapath.PortInfo) bool { return p.TxPackets == tx })
	}
	send("web", toAPI, "api", 3)   // api sent it: captured
	send("api", fromAPI, "web", 3) // api received it: captured
	send("web", webToDB, "db", 3)  // not api's
	send("db", dbToAPI, "api", 4)  // captured, the third
	send("web", toAPI, "api", 5)   // beyond count
	got := readPcap(t, body)       // ends after count frames
	require.Equal(t, [][]byte{toAPI, fromAPI, dbToAPI}, got)
	require.Eventually(t, func() bool { return l.dp.Capture().Subscriptions() == 0 }, 5*time.Second, time.Millisecond)
}

// TestCaptureAll captures every port: a forwarded frame is seen once
// received and once sent, and a dropped one once.
func TestCaptureAll(t *testing.T) {
	l := newLab(t)
	l.learn(t)
	c := serve(t, l.dp)
	body, err := c.Stream(context.Background(), "/v1/capture?network=front&count=3")
	require.NoError(t, err)
	defer body.Close()
	f := udpFrame(t, macWeb, macAPI, "hello")
	l.ports["web"].Inject(f)
	l.waitPort(t, "api", func(p datapath.PortInfo) bool { return p.TxPackets == 3 })
	bad := udpFrame(t, packet.MAC{0x01, 0, 0x5e, 0, 0, 1}, macAPI, "bad")
	l.ports["db"].Inject(bad)
	require.Equal(t, [][]byte{f, f, bad}, readPcap(t, body))
}

// TestCaptureUplink captures the uplink of the NAT lab: an ARP request from
// the host and the router's answer.
func TestCaptureUplink(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	body, err := c.Stream(context.Background(), "/v1/capture?port=uplink&count=2")
	require.NoError(t, err)
	defer body.Close()
	host := packet.MAC{0x02, 0, 0, 0, 0, 1}
	req := arpRequest(t, host, net.IPv4(10, 250, 0, 1), net.IPv4(10, 250, 0, 2))
	l.ports["uplink"].Inject(req)
	reply := l.ports["uplink"].Recv(5 * time.Second)
	require.NotNil(t, reply, "the router answers ARP on the uplink")
	got := readPcap(t, body)
	require.Len(t, got, 2)
	require.Equal(t, req, got[0][:len(req)])
	require.Equal(t, reply, got[1])
}

// TestCaptureEndsWhenClientGoes: a client that goes away ends the capture.
func TestCaptureEndsWhenClientGoes(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	ctx, cancel := context.WithCancel(context.Background())
	body, err := c.Stream(ctx, "/v1/capture")
	require.NoError(t, err)
	require.Equal(t, 1, l.dp.Capture().Subscriptions())
	require.True(t, l.dp.Capture().Active())
	cancel()
	body.Close()
	require.Eventually(t, func() bool { return l.dp.Capture().Subscriptions() == 0 }, 5*time.Second, time.Millisecond)
	require.False(t, l.dp.Capture().Active())
}

func TestCaptureErrors(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	for _, tc := range []struct {
		path string
		code int
		msg  string
	}{
		{"/v1/capture?port=nope", 404, `no port "nope"`},
		{"/v1/capture?network=nope", 404, `no network "nope"`},
		{"/v1/capture?port=web&network=back", 404, `port "web" is not on network "back"`},
		{"/v1/capture?port=uplink&network=front", 404, `port "uplink" is not on network "front"`},
		{"/v1/capture?count=-1", 400, `query parameter count="-1": want a number of frames, 0 for no limit`},
		{"/v1/capture?count=x", 400, `query parameter count="x": want a number of frames, 0 for no limit`},
		{"/v1/capture?snaplen=9", 400, `unknown query parameter "snaplen" (/v1/capture takes port, network, count)`},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, hdr, body := rawGet(t, c, "GET", tc.path)
			require.Equal(t, tc.code, code)
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
			var eb errorBody
			require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
			require.Equal(t, tc.msg, eb.Error)
		})
	}
	// The lab without an uplink has no uplink port.
	code, _, body := rawGet(t, serve(t, newLab(t).dp), "GET", "/v1/capture?port=uplink")
	require.Equal(t, 404, code, body)
	require.Zero(t, l.dp.Capture().Subscriptions())
}

// TestCaptureGatewayOrder: the gateway port's device is the router, which
// answers while the switch hands it the frame; the capture still shows the
// request, unmodified, before the answer.
func TestCaptureGatewayOrder(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	body, err := c.Stream(context.Background(), "/v1/capture?port=gw/front&count=2")
	require.NoError(t, err)
	defer body.Close()
	req := arpRequest(t, macWeb, net.IPv4(172, 20, 0, 10), net.IPv4(172, 20, 0, 1))
	l.ports["web"].Inject(req)
	reply := l.ports["web"].Recv(5 * time.Second)
	require.NotNil(t, reply, "the gateway answers ARP")
	got := readPcap(t, body)
	require.Len(t, got, 2)
	require.Equal(t, req, got[0], "sent to the router first")
	require.Equal(t, reply, got[1], "then its answer, received from it")
}
