package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/uswitch-dev/uswitch/capture"
)

func cmdCapture(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return capturePcap(ctx, args, os.Stdout, os.Stderr)
}

// capturePcap is `uswitch capture`: it writes the instance's pcap stream
// (GET /v1/capture) to a file or to stdout until COUNT frames, the end of
// ctx (SIGINT, SIGTERM: not an error) or the end of the instance, then
// reports on stderr how many frames it wrote, as tcpdump does.
func capturePcap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("capture", captureSynopsis)
	var f inspectFlags
	f.registerInstance(fs)
	port := fs.String("port", "", "capture only port `P` (both directions), e.g. web, web/eth1, gw/front, uplink")
	network := fs.String("network", "", "capture only the ports of network `N`")
	count := fs.Int("c", 0, "exit after `COUNT` frames (0: until interrupted)")
	out := fs.String("w", "", "write the pcap stream to `FILE`, or to stdout with -w -")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *out == "":
		return flagError(fs, errors.New("-w FILE|- is required (uswitch capture writes pcap: read it with tcpdump -r or Wireshark)"))
	case *count < 0:
		return flagError(fs, fmt.Errorf("-c %d: want a positive number of frames", *count))
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *port != "" {
		q.Set("port", *port)
	}
	if *network != "" {
		q.Set("network", *network)
	}
	if *count > 0 {
		q.Set("count", strconv.Itoa(*count))
	}
	path := "/v1/capture"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	body, err := c.Stream(ctx, path)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted before it began
		}
		return err
	}
	defer body.Close()

	w := stdout
	var file *os.File
	if *out != "-" {
		if file, err = os.Create(*out); err != nil {
			return err
		}
		w = file
	}
	fmt.Fprintf(stderr, "listening on %s, link-type EN10MB (Ethernet), snapshot length %d bytes\n",
		captureScope(*port, *network), capture.Snaplen)
	n, err := copyPcap(ctx, body, w, *count)
	fmt.Fprintf(stderr, "%d packet%s captured\n", n, plural(n))
	if file != nil {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// captureScope describes what a capture listens on, for its first line.
func captureScope(port, network string) string {
	switch {
	case port != "" && network != "":
		return fmt.Sprintf("port %s of network %s", port, network)
	case port != "":
		return "port " + port
	case network != "":
		return "every port of network " + network
	}
	return "every port"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// pcap file format: a 24-byte file header whose first four bytes tell the
// byte order and timestamp resolution, then per frame a 16-byte record
// header (seconds, fraction, captured length, original length) and the
// captured bytes.
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
	pcapMagicMicros     = 0xa1b2c3d4
	pcapMagicNanos      = 0xa1b23c4d
	maxPcapRecord       = 256 << 10 // sanity bound on one record's length
)

// errStreamEnded is the end of a capture stream that the instance closed
// before the count was reached.
var errStreamEnded = errors.New("capture: the instance closed the stream (it is shutting down)")

// copyPcap copies a pcap stream from r to w record by record, unchanged,
// and returns how many frames it copied: until count frames (0: no limit),
// the end of ctx (not an error) or the end of r (an error). w is flushed
// whenever r has nothing more buffered, so a reader of w (tcpdump -r -)
// sees each frame as it comes.
func copyPcap(ctx context.Context, r io.Reader, w io.Writer, count int) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	fail := func(err error) (int, error) {
		ferr := bw.Flush()
		switch {
		case ctx.Err() != nil:
			return n, nil // interrupted
		case errors.Is(err, io.EOF):
			err = errStreamEnded
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = fmt.Errorf("capture: the stream was cut in the middle of a frame: %w", err)
		}
		if err == nil {
			err = ferr
		}
		return n, err
	}
	hdr := make([]byte, pcapFileHeaderLen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return fail(err)
	}
	var order binary.ByteOrder
	switch {
	case binary.LittleEndian.Uint32(hdr) == pcapMagicNanos, binary.LittleEndian.Uint32(hdr) == pcapMagicMicros:
		order = binary.LittleEndian
	case binary.BigEndian.Uint32(hdr) == pcapMagicNanos, binary.BigEndian.Uint32(hdr) == pcapMagicMicros:
		order = binary.BigEndian
	default:
		return fail(fmt.Errorf("capture: the instance sent no pcap stream (magic % x)", hdr[:4]))
	}
	if _, err := bw.Write(hdr); err != nil {
		return n, err
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	rec := make([]byte, pcapRecordHeaderLen+maxPcapRecord)
	for count == 0 || n < count {
		if _, err := io.ReadFull(br, rec[:pcapRecordHeaderLen]); err != nil {
			return fail(err)
		}
		caplen := order.Uint32(rec[8:12])
		if caplen > maxPcapRecord {
			return fail(fmt.Errorf("capture: bad pcap record length %d", caplen))
		}
		frame := rec[:pcapRecordHeaderLen+int(caplen)]
		if _, err := io.ReadFull(br, frame[pcapRecordHeaderLen:]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fail(err)
		}
		if _, err := bw.Write(frame); err != nil {
			return n, err
		}
		n++
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
	return n, bw.Flush()
}
