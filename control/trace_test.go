package control

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
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
