package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckJSON: check -o json prints the resolved plan, durations as
// strings like "300s", and the busy-poll and CPU latency settings.
func TestCheckJSON(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, check([]string{"-o", "json"}, &b))
	var plan struct {
		Name     string         `json:"name"`
		Defaults map[string]any `json:"defaults"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &plan), b.String())
	require.Equal(t, "demo", plan.Name)
	require.Equal(t, "300s", plan.Defaults["fdb_ageing"])
	require.Equal(t, true, plan.Defaults["busy_poll"])
	require.Equal(t, false, plan.Defaults["cpu_latency"])

	b.Reset()
	require.NoError(t, check(nil, &b))
	require.Contains(t, b.String(), "fdb_ageing=300s ")
	require.Contains(t, b.String(), "busy_poll=true cpu_latency=false")
}

func TestCheckConfigKeys(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "net.toml")
	require.NoError(t, os.WriteFile(cfg, []byte(`name = "t"
[defaults]
busy_poll = false
cpu_latency = true
fdb_ageing = "90s"
`), 0o644))
	var b bytes.Buffer
	require.NoError(t, check([]string{"--config", cfg, "-o", "json"}, &b))
	require.Contains(t, b.String(), `"fdb_ageing": "90s"`)
	require.Contains(t, b.String(), `"busy_poll": false`)
	require.Contains(t, b.String(), `"cpu_latency": true`)
}

func TestLogger(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, "text", slog.LevelInfo)
	log.Debug("hidden")
	log.Info("ready", "instance", "demo")
	require.NotContains(t, b.String(), "hidden")
	require.Contains(t, b.String(), "level=INFO msg=ready instance=demo\n")

	b.Reset()
	log = newLogger(&b, "json", slog.LevelWarn)
	log.Info("hidden")
	log.Warn("odd", "n", 1)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 1)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
	require.Equal(t, "WARN", rec["level"])
	require.Equal(t, "odd", rec["msg"])
	require.Equal(t, 1.0, rec["n"])

	b.Reset()
	newLogger(&b, "text", logLevels["debug"]).Debug("shown")
	require.Contains(t, b.String(), "level=DEBUG msg=shown")
}
