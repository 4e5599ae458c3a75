package datapath

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/packet"
)

func TestPanicCostsOneFrame(t *testing.T) {
	var logs bytes.Buffer
	d, err := New(testPlan(false), &clock.Fake{}, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	defer d.Close()
	calls := 0
	input := func(f []byte, _ packet.Offload) {
		calls++
		if f[0] == 0xff {
			panic("bug")
		}
	}
	d.carry("web", input, []byte{0xff}, packet.Offload{})
	d.carry("web", input, []byte{0x00}, packet.Offload{})
	require.Equal(t, 2, calls, "the next frame is carried as usual")
	require.Contains(t, logs.String(), "frame handling panicked")
	require.Contains(t, logs.String(), "port=web")
}
