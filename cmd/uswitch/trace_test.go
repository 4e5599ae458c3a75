package main

import (
	"bytes"
	"context"
	"testing"
	"time"

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

// TestTraceLiveCommand: trace --live -c 1 prints the steps of one real
// frame that matches, then ends.
func TestTraceLiveCommand(t *testing.T) {
	in := startInstance(t)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- traceCmd(context.Background(), []string{"--control", in.sock, "--live", "--port", "web", "--match", "arp", "-c", "1"}, &out)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			s := out.String()
			require.Contains(t, s, " frame from front/web\n")
			require.Contains(t, s, "flood to [gw/front api]")
			require.Contains(t, s, "verdict: forward to front/api\n")
			return
		case <-tick.C:
			in.inject(t, "web", macWeb) // until the live trace has started
		case <-time.After(10 * time.Second):
			t.Fatal("trace --live printed nothing")
		}
	}
}
