package control

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/trace"
)

// TestTrace: GET /v1/trace runs the tracer: a published port reached from
// the uplink is forwarded to web, a packet a rule drops names the rule, and
// bad parameters are 400s.
func TestTrace(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	ctx := context.Background()

	var res datapath.TraceResult
	require.NoError(t, c.GetJSON(ctx, "/v1/trace?port=uplink&dst=10.250.0.2&proto=tcp&dport=8080", &res))
	require.Equal(t, "queued", res.Verdict.Action, "web's MAC is not known yet: %+v", res.Steps)
	var dnat bool
	for _, s := range res.Steps {
		dnat = dnat || s.Rule == "publish web 8080:80/tcp"
	}
	require.True(t, dnat)

	require.NoError(t, c.GetJSON(ctx, "/v1/trace?port=web&dst=10.250.0.1&proto=udp&dport=9999", &res))
	require.Equal(t, "drop", res.Verdict.Action)
	require.Equal(t, "filtered", res.Verdict.Reason)
	require.Equal(t, "rule line 42", res.Steps[len(res.Steps)-2].Rule)

	for _, q := range []string{"port=web&dst=x", "port=nope&dst=10.250.0.1", "port=web&dst=10.250.0.1&dport=70000", "port=web&bogus=1"} {
		code, _, body := rawGet(t, c, http.MethodGet, "/v1/trace?"+q)
		require.Equal(t, http.StatusBadRequest, code, "%s: %s", q, body)
		require.Contains(t, body, `"error"`)
	}
}

// TestTraceLive: GET /v1/trace?live=1 streams the steps of the real frames
// that match, up to count; bad parameters are refused before streaming.
func TestTraceLive(t *testing.T) {
	l := newNATLab(t)
	c := serve(t, l.dp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := c.Stream(ctx, "/v1/trace?live=1&port=web&match=udp+and+port+9999&count=1")
	require.NoError(t, err)
	defer body.Close()
	l.ports["web"].Inject(udp4(t, macWeb, gwFront, "172.20.0.10:5000", "10.250.0.1:53", "not followed"))
	l.ports["web"].Inject(udp4(t, macWeb, gwFront, "172.20.0.10:5000", "10.250.0.1:9999", "followed"))
	dec := json.NewDecoder(body)
	var ev trace.Event
	require.NoError(t, dec.Decode(&ev))
	require.Equal(t, "web", ev.Port)
	require.Equal(t, trace.Verdict{Action: "drop", Reason: "filtered"}, ev.Verdict, "%+v", ev.Steps)
	require.True(t, strings.Contains(ev.Steps[0].Text, ":9999"), ev.Steps[0].Text)
	require.Error(t, dec.Decode(&ev), "the stream ends after count events")

	for q, code := range map[string]int{
		"live=1&match=bogus":           http.StatusBadRequest,
		"live=1&port=nope":             http.StatusNotFound,
		"live=1&network=nope":          http.StatusNotFound,
		"live=1&port=web&network=back": http.StatusNotFound,
		"live=1&count=x":               http.StatusBadRequest,
		"live=1&dst=10.0.0.1":          http.StatusBadRequest,
	} {
		got, _, msg := rawGet(t, c, http.MethodGet, "/v1/trace?"+q)
		require.Equal(t, code, got, "%s: %s", q, msg)
	}
}
