package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

// runCapture starts cmd (a `uswitch capture`), waits until it listens, then
// has ns ping ip until cmd exits, and returns cmd's stderr. cmd's stdout is
// the caller's to set.
func runCapture(t *testing.T, cmd *exec.Cmd, ns, ip string) (stderr string) {
	t.Helper()
	var errb lockedBuffer
	cmd.Stderr = &errb
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	done := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "listening on") },
		10*time.Second, 20*time.Millisecond, "capture did not start:\n%s", errb.String())
	for i := 0; ; i++ {
		select {
		case err := <-exited:
			require.NoError(t, err, "stderr:\n%s", errb.String())
			return errb.String()
		default:
		}
		require.Less(t, i, 20, "capture did not end after %d pings:\n%s", i, errb.String())
		ping(t, ns, ip)
	}
}

// capturedFrame is one record of a pcap stream, decoded.
type capturedFrame struct {
	ci gopacket.CaptureInfo
	p  gopacket.Packet
}

// readPcap reads a whole pcap stream as `tcpdump -r` would and returns its
// frames; it fails unless the link type is Ethernet and every record is
// whole (not truncated) and decodes.
func readPcap(r io.Reader) ([]capturedFrame, error) {
	rd, err := pcapgo.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("pcap file header: %w", err)
	}
	if rd.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("link type %v, want Ethernet", rd.LinkType())
	}
	var frames []capturedFrame
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("record %d: %w", len(frames)+1, err)
		}
		if ci.Length != ci.CaptureLength || ci.CaptureLength != len(data) {
			return frames, fmt.Errorf("record %d truncated: %d of %d bytes", len(frames)+1, ci.CaptureLength, ci.Length)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			return frames, fmt.Errorf("record %d does not decode: %v", len(frames)+1, el.Error())
		}
		frames = append(frames, capturedFrame{ci, p})
	}
}

// requirePingFrames requires frames to be the traffic of pings between the
// addresses from and to (ICMP echo and ARP between the two, and the IPv6
// neighbour discovery every interface does on its own), in time
// order, with at least one echo request from -> to and one reply to -> from.
func requirePingFrames(t *testing.T, frames []capturedFrame, from, to string) {
	t.Helper()
	pair := []string{from, to}
	var requests, replies int
	var prev time.Time
	for i, f := range frames {
		require.False(t, f.ci.Timestamp.Before(prev), "frame %d: timestamps go forward", i+1)
		prev = f.ci.Timestamp
		if arp, ok := f.p.Layer(layers.LayerTypeARP).(*layers.ARP); ok {
			ips := []string{net.IP(arp.SourceProtAddress).String(), net.IP(arp.DstProtAddress).String()}
			require.ElementsMatch(t, pair, ips, "frame %d: ARP between the two:\n%v", i+1, f.p)
			continue
		}
		if f.p.Layer(layers.LayerTypeICMPv6) != nil {
			continue // the namespaces' own IPv6 neighbour and multicast discovery
		}
		ip, ok := f.p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		require.True(t, ok, "frame %d is IPv4, ARP or ICMPv6:\n%v", i+1, f.p)
		ic, ok := f.p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		require.True(t, ok, "frame %d is ICMP:\n%v", i+1, f.p)
		src, dst := ip.SrcIP.String(), ip.DstIP.String()
		require.ElementsMatch(t, pair, []string{src, dst}, "frame %d: between the two:\n%v", i+1, f.p)
		switch ic.TypeCode.Type() {
		case layers.ICMPv4TypeEchoRequest:
			if src == from {
				requests++
			}
		case layers.ICMPv4TypeEchoReply:
			if src == to {
				replies++
			}
		default:
			t.Fatalf("frame %d: ICMP %v, not echo:\n%v", i+1, ic.TypeCode, f.p)
		}
	}
	require.Positive(t, requests, "an echo request %s > %s", from, to)
	require.Positive(t, replies, "an echo reply %s > %s", to, from)
}

// TestCapture: `uswitch capture` writes pcap that a reader decodes, to a
// file and as a stream on stdout.
func TestCapture(t *testing.T) {
	needRoot(t)
	name := prefix("cap")
	cfg := writeConfig(t, l2Config(name)) // a, b (and c) on 10.77.0.0/24
	start(t, name, cfg)
	a, b := name+"-a", name+"-b"
	const ipA, ipB = "10.77.0.2", "10.77.0.3"
	ping(t, a, ipB) // ARP is resolved: the captures see ICMP at once

	t.Run("to a file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "f.pcap")
		cmd := exec.Command(binary, "capture", "--port", a, "-c", "5", "-w", file, "--config", cfg)
		stderr := runCapture(t, cmd, a, ipB)
		require.Contains(t, stderr, "listening on port "+a+", link-type EN10MB (Ethernet)")
		require.Contains(t, stderr, "\n5 packets captured\n")

		f, err := os.Open(file)
		require.NoError(t, err)
		defer f.Close()
		frames, err := readPcap(f)
		require.NoError(t, err)
		require.Len(t, frames, 5, "-c 5")
		requirePingFrames(t, frames, ipA, ipB)
	})

	t.Run("through a pipe", func(t *testing.T) {
		// `uswitch capture -w - | reader`: the test reads the pipe itself
		// while uswitch writes it, until uswitch closes it.
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		defer pr.Close()
		type result struct {
			frames []capturedFrame
			err    error
		}
		got := make(chan result, 1)
		go func() {
			frames, err := readPcap(pr)
			got <- result{frames, err}
		}()
		cmd := exec.Command(binary, "capture", "-c", "4", "-w", "-", "--config", cfg)
		cmd.Stdout = pw
		stderr := runCapture(t, cmd, b, ipA)
		pw.Close() // uswitch's copy is closed at its exit: the reader sees EOF
		require.Contains(t, stderr, "listening on every port")
		require.Contains(t, stderr, "\n4 packets captured\n")
		var r result
		select {
		case r = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("the pcap stream did not end after uswitch exited")
		}
		require.NoError(t, r.err)
		require.Len(t, r.frames, 4, "-c 4")
		requirePingFrames(t, r.frames, ipB, ipA)
	})
}
