package control

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serveAt is serve, returning the socket path for raw connections.
func serveAt(t *testing.T, b Backend) string {
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
	return path
}

// rawRequest writes req on a new connection to the socket and reads one
// response.
func rawRequest(t *testing.T, path, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(c, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestOversizedHeader(t *testing.T) {
	path := serveAt(t, newLab(t).dp)
	// Well under the limit: answered.
	resp, body := rawRequest(t, path, "GET /v1/ports HTTP/1.1\r\nHost: uswitch\r\nX-Pad: "+strings.Repeat("a", 2<<10)+"\r\nConnection: close\r\n\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	// Far over it (64 KiB of headers): 431, without reading them all.
	resp, body = rawRequest(t, path, "GET /v1/ports HTTP/1.1\r\nHost: uswitch\r\nX-Pad: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, body)
}

// TestSlowlorisCutOff: a client that sends its headers a line at a time and
// never finishes them is disconnected once readHeaderTimeout has passed
// since its first byte, however steadily it trickles.
func TestSlowlorisCutOff(t *testing.T) {
	old := readHeaderTimeout
	readHeaderTimeout = 300 * time.Millisecond
	t.Cleanup(func() { readHeaderTimeout = old }) // runs after the server stopped
	path := serveAt(t, newLab(t).dp)

	t0 := time.Now() // before the dial: the server's clock may start at its accept
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /v1/ports HTTP/1.1\r\nHost: uswitch\r\n")
	require.NoError(t, err)
	closed := make(chan time.Duration, 1)
	go func() {
		// The server answers nothing; the read ends when it hangs up.
		io.Copy(io.Discard, c)
		closed <- time.Since(t0)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(5 * time.Second)
	for {
		select {
		case took := <-closed:
			require.GreaterOrEqual(t, took, 300*time.Millisecond, "cut off before the timeout")
			require.Less(t, took, 3*time.Second)
			return
		case <-tick.C:
			// Writes may fail once the server has hung up: that is the point.
			_, _ = io.WriteString(c, "X-Slow: a\r\n")
		case <-limit:
			t.Fatal("slow client still connected after 5s")
		}
	}
}

func TestRequestBodyRefused(t *testing.T) {
	path := serveAt(t, newLab(t).dp)
	for _, req := range []string{
		"GET /v1/fdb HTTP/1.1\r\nHost: uswitch\r\nContent-Length: 5\r\n\r\nhello",
		"GET /v1/fdb HTTP/1.1\r\nHost: uswitch\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		resp, body := rawRequest(t, path, req)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var eb errorBody
		require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
		require.Equal(t, "/v1/fdb takes no request body", eb.Error)
	}
	// A wrong method with a body is still a wrong method.
	resp, body := rawRequest(t, path, "POST /v1/fdb HTTP/1.1\r\nHost: uswitch\r\nContent-Length: 5\r\n\r\nhello")
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, body)
	// Without a body, the same request is answered.
	resp, body = rawRequest(t, path, "GET /v1/fdb HTTP/1.1\r\nHost: uswitch\r\nConnection: close\r\n\r\n")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
}

// A body declared larger than the endpoint takes is refused before any of
// it is read, and the connection closed.
func TestHugeBodyRefusedAtOnce(t *testing.T) {
	path := serveAt(t, newLab(t).dp)
	for _, p := range []string{"/v1/endpoints", "/v1/fdb"} {
		resp, body := rawRequest(t, path, "POST "+p+" HTTP/1.1\r\nHost: uswitch\r\nContent-Length: 100000000\r\n\r\n"+strings.Repeat("x", 1000))
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, body)
		require.True(t, resp.Close, "the connection is closed")
	}
}

// A client that declares a body and sends part of it is disconnected once
// bodyTimeout has passed, rather than holding the connection forever.
func TestSlowBodyCutOff(t *testing.T) {
	old := bodyTimeout
	bodyTimeout = 300 * time.Millisecond
	t.Cleanup(func() { bodyTimeout = old })
	path := serveAt(t, newLab(t).dp)
	for _, p := range []string{"/v1/endpoints", "/v1/fdb"} {
		t0 := time.Now()
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		_, err = io.WriteString(c, "POST "+p+" HTTP/1.1\r\nHost: uswitch\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 10))
		require.NoError(t, err)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c) // whatever the answer, the server hangs up
		took := time.Since(t0)
		c.Close()
		require.NoError(t, err, "%s: closed by the server, not by our 5 s deadline", p)
		require.GreaterOrEqual(t, took, 300*time.Millisecond, p)
		require.Less(t, took, 3*time.Second, p)
	}
}
