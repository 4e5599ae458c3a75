package control

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"runtime/pprof"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCPUProfile(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)

	code, hdr, body := rawGet(t, c, http.MethodGet, "/debug/pprof/profile?seconds=1")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "application/octet-stream", hdr.Get("Content-Type"))
	// go tool pprof's format: a gzip-compressed protocol buffer.
	zr, err := gzip.NewReader(bytes.NewReader([]byte(body)))
	require.NoError(t, err, "the profile is gzip-compressed")
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.NotEmpty(t, raw)

	for _, q := range []string{"0", "601", "x", "1.5"} {
		code, _, body = rawGet(t, c, http.MethodGet, "/debug/pprof/profile?seconds="+q)
		require.Equal(t, http.StatusBadRequest, code, "seconds=%s: %s", q, body)
		require.Contains(t, body, "seconds must be a whole number from 1 to 600")
	}
	code, _, body = rawGet(t, c, http.MethodGet, "/debug/pprof/profile?secs=1")
	require.Equal(t, http.StatusBadRequest, code, body)

	// One CPU profile at a time (uswitch run --cpuprofile holds one).
	require.NoError(t, pprof.StartCPUProfile(io.Discard))
	code, hdr, body = rawGet(t, c, http.MethodGet, "/debug/pprof/profile?seconds=1")
	pprof.StopCPUProfile()
	require.Equal(t, http.StatusConflict, code, body)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	require.Contains(t, body, "cannot profile now")
}
