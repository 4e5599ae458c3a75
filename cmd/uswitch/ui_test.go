package main

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUICommand: `uswitch ui` serves the page and the read-only API on
// loopback, refuses other addresses, and stops with its context.
func TestUICommand(t *testing.T) {
	in := startInstance(t)
	err := serveUI(context.Background(), []string{"--control", in.sock, "--listen", "0.0.0.0:0"}, func(string) {})
	require.ErrorContains(t, err, "loopback only")

	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveUI(ctx, []string{"--control", in.sock, "--listen", "127.0.0.1:0"}, func(a string) { addr <- a })
	}()
	base := "http://" + <-addr
	for path, want := range map[string]string{"/": "<svg id=\"topo\"", "/api/v1/ports": `"name": "web"`} {
		resp, err := http.Get(base + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Contains(t, string(b), want, path)
	}
	cancel()
	require.NoError(t, <-done)
}
