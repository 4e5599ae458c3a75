package control

import (
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"
)

// maxProfileSeconds bounds GET /debug/pprof/profile's seconds.
const maxProfileSeconds = 600

// cpuProfile answers GET /debug/pprof/profile?seconds=N: a CPU profile of
// the process over the next N seconds (default 30), in the format of go
// tool pprof, as net/http/pprof's handler of that path answers. It lets a
// benchmark profile one measure of a running instance. The runtime holds
// one CPU profile at a time: while another runs (uswitch run --cpuprofile,
// or a concurrent request) the answer is 409. A client that goes away ends
// the profile early.
func (h *handler) cpuProfile(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "seconds")
	if err != nil {
		return err
	}
	secs := 30
	if q.Has("seconds") {
		secs, err = strconv.Atoi(q.Get("seconds"))
		if err != nil || secs < 1 || secs > maxProfileSeconds {
			return errorf(http.StatusBadRequest, "seconds must be a whole number from 1 to %d, not %q", maxProfileSeconds, q.Get("seconds"))
		}
	}
	// The profile is written to w as it is taken: the headers must be set
	// before StartCPUProfile, and an error after it can only end the body.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="profile"`)
	pw := &pendingWriter{w: w}
	if err := pprof.StartCPUProfile(pw); err != nil {
		w.Header().Del("Content-Disposition")
		return errorf(http.StatusConflict, "cannot profile now: %v", err)
	}
	t := time.NewTimer(time.Duration(secs) * time.Second)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
	}
	pprof.StopCPUProfile()
	return nil
}

// pendingWriter writes the status line only with the first byte, so that a
// refused StartCPUProfile can still answer with an error.
type pendingWriter struct {
	w       http.ResponseWriter
	started bool
}

func (p *pendingWriter) Write(b []byte) (int, error) {
	if !p.started {
		p.started = true
		p.w.WriteHeader(http.StatusOK)
	}
	return p.w.Write(b)
}
