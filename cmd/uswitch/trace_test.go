package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/trace"
)

func TestWriteTrace(t *testing.T) {
	res := &datapath.TraceResult{
		Steps: []trace.Step{
			{Kind: trace.Ingress, Where: "front/web", Text: "a frame"},
			{Kind: trace.Hook, Where: "forward", Text: "matched", Rule: "isolation"},
			{Kind: trace.Drop, Where: "router/gw/front", Text: "dropped by the router", Reason: "isolated"},
		},
		Verdict: trace.Verdict{Action: "drop", Reason: "isolated"},
	}
	var b bytes.Buffer
	require.NoError(t, writeTrace(&b, res))
	require.Equal(t, `#  STEP     WHERE            WHAT
1  ingress  front/web        a frame
2  hook     forward          matched [rule: isolation]
3  drop     router/gw/front  dropped by the router (isolated)
verdict: drop (isolated)
`, b.String())
}

func TestTraceNeedsPortAndDst(t *testing.T) {
	err := traceCmd(context.Background(), []string{"--port", "web", "--control", "/nonexistent"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "--dst")
}
