package control

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/uswitch-dev/uswitch/capture"
)

// PcapContentType is the media type of GET /v1/capture.
const PcapContentType = "application/vnd.tcpdump.pcap"

// capture answers GET /v1/capture[?port=P][&network=N][&count=C]: the
// frames of port P (both directions, like tcpdump -i P), of every port of
// network N, or of every port, as a nanosecond pcap stream flushed frame by
// frame, until C frames were sent or the client goes away. A client that
// reads too slowly loses frames (counted in the log line that ends the
// capture) rather than slowing the datapath.
func (h *handler) capture(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "port", "network", "count")
	if err != nil {
		return err
	}
	f := capture.Filter{Port: q.Get("port"), Network: q.Get("network")}
	if q.Has("count") {
		v := q.Get("count")
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "query parameter count=%q: want a number of frames, 0 for no limit", v)
		}
		f.Count = n
	}
	if err := h.checkCaptureFilter(f); err != nil {
		return err
	}
	sub, err := h.b.Capture().Subscribe(f)
	if err != nil {
		return errorf(http.StatusServiceUnavailable, "%v", err)
	}
	defer sub.Close()

	w.Header().Set("Content-Type", PcapContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	err = sub.WritePcap(r.Context(), flushWriter{w, http.NewResponseController(w)})
	slog.Info("capture ended", "port", f.Port, "network", f.Network,
		"frames", sub.Captured(), "dropped", sub.Dropped(), "err", err)
	return nil // the answer has begun: nothing more to say
}

// checkCaptureFilter checks that the port and network of f exist, and that
// the port is on the network when both are given.
func (h *handler) checkCaptureFilter(f capture.Filter) error {
	if f.Network != "" {
		found := false
		for _, sw := range h.b.Networks() {
			found = found || sw.Name() == f.Network
		}
		if !found {
			return errorf(http.StatusNotFound, "no network %q", f.Network)
		}
	}
	if f.Port == "" {
		return nil
	}
	for _, p := range h.b.Ports() {
		if p.Name != f.Port {
			continue
		}
		if f.Network != "" && p.Network != f.Network {
			return errorf(http.StatusNotFound, "port %q is not on network %q", f.Port, f.Network)
		}
		return nil
	}
	return errorf(http.StatusNotFound, "no port %q", f.Port)
}

// flushWriter is a response body that WritePcap can flush.
type flushWriter struct {
	io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Flush() error { return f.rc.Flush() }
