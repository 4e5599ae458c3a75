package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// readPcapFrames decodes a pcap stream and returns its frames.
func readPcapFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r, err := pcapgo.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, layers.LinkTypeEthernet, r.LinkType())
	var out [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		require.NoError(t, err)
		out = append(out, data)
	}
}

// startCapture runs `uswitch capture args...` until it returns, and waits
// until it listens.
func startCapture(t *testing.T, ctx context.Context, args []string, stdout io.Writer) (stderr *syncBuffer, done chan error) {
	t.Helper()
	stderr = &syncBuffer{}
	done = make(chan error, 1)
	go func() { done <- capturePcap(ctx, args, stdout, stderr) }()
	require.Eventually(t, func() bool { return strings.Contains(stderr.String(), "listening on") }, 5*time.Second, time.Millisecond)
	return stderr, done
}

func TestCaptureCommandCount(t *testing.T) {
	in := startInstance(t)
	file := filepath.Join(t.TempDir(), "f.pcap")
	stderr, done := startCapture(t, context.Background(), []string{"--control", in.sock, "--port", "web", "-c", "2", "-w", file}, io.Discard)
	require.Equal(t, "listening on port web, link-type EN10MB (Ethernet), snapshot length 65536 bytes\n", stderr.String())
	in.send(t, "web", macWeb) // received on web
	in.send(t, "api", macAPI) // flooded: sent on web
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("capture -c 2 did not end after 2 frames")
	}
	require.Contains(t, stderr.String(), "\n2 packets captured\n")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	frames := readPcapFrames(t, b)
	require.Len(t, frames, 2)
	require.Equal(t, macWeb[:], frames[0][6:12], "source of the first")
	require.Equal(t, macAPI[:], frames[1][6:12], "source of the second")
}

func TestCaptureCommandStdoutInterrupted(t *testing.T) {
	in := startInstance(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	stderr, done := startCapture(t, ctx, []string{"--control", in.sock, "-w", "-"}, &out)
	require.Contains(t, stderr.String(), "listening on every port,")
	in.send(t, "web", macWeb) // rx web, tx api, tx gw/front
	const want = 24 + 3*(16+60)
	require.Eventually(t, func() bool { return len(out.String()) == want }, 5*time.Second, time.Millisecond, "flushed frame by frame")
	cancel() // SIGINT
	require.NoError(t, <-done, "an interrupted capture is not an error")
	require.True(t, strings.HasSuffix(stderr.String(), "\n3 packets captured\n"), stderr.String())
	require.Len(t, readPcapFrames(t, []byte(out.String())), 3)
}

func TestCaptureCommandErrors(t *testing.T) {
	in := startInstance(t)
	// A usage mistake: exit 2, its message and usage on stderr.
	code, _, _ := runCLI(t, "capture", "--control", in.sock)
	require.Equal(t, 2, code)
	err := capturePcap(context.Background(), []string{"--control", in.sock}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "-w FILE|- is required")
	code, _, _ = runCLI(t, "capture", "--control", in.sock, "-c", "-3", "-w", "-")
	require.Equal(t, 2, code)
	err = capturePcap(context.Background(), []string{"--control", in.sock, "-c", "-3", "-w", "-"}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "-c -3: want a positive number of frames")
	code, _, stderr := runCLI(t, "capture", "--control", in.sock, "--port", "nope", "-w", "-")
	require.Equal(t, 1, code)
	require.Equal(t, "uswitch: no port \"nope\"\n", stderr)
	code, _, stderr = runCLI(t, "capture", "--control", filepath.Join(t.TempDir(), "none.sock"), "-w", "-")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no uswitch instance is running")
}

func TestCopyPcap(t *testing.T) {
	var stream bytes.Buffer
	w := pcapgo.NewWriterNanos(&stream)
	require.NoError(t, w.WriteFileHeader(65536, layers.LinkTypeEthernet))
	// Three records, written by pcapgo itself.
	for i := range 3 {
		f := bytes.Repeat([]byte{byte(i)}, 60+i)
		require.NoError(t, w.WritePacket(captureInfo(len(f)), f))
	}
	whole := stream.Bytes()

	var out bytes.Buffer
	n, err := copyPcap(context.Background(), bytes.NewReader(whole), &out, 2)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Len(t, readPcapFrames(t, out.Bytes()), 2)

	out.Reset()
	n, err = copyPcap(context.Background(), bytes.NewReader(whole), &out, 0)
	require.ErrorIs(t, err, errStreamEnded)
	require.Equal(t, 3, n)
	require.Equal(t, whole, out.Bytes(), "copied unchanged")

	_, err = copyPcap(context.Background(), bytes.NewReader(whole[:len(whole)-5]), io.Discard, 0)
	require.ErrorContains(t, err, "cut in the middle of a frame")

	_, err = copyPcap(context.Background(), strings.NewReader(`{"error": "not pcap at all"}`), io.Discard, 0)
	require.ErrorContains(t, err, "the instance sent no pcap stream")
}

func captureInfo(n int) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(1, 2), CaptureLength: n, Length: n}
}
