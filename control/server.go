package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Server limits. There is no server-wide read or write timeout: watch
// streams live as long as their client, and a connection read deadline
// would cancel them. Requests are bounded instead by the time and size of
// their headers (a larger header gets 431; a client that does not finish
// its headers in time is disconnected), and by their body: a GET with a
// body is refused with 400, a body declared larger than the endpoint takes
// (bodyLimit) with 413 before any of it is read, any body is cut at that
// limit, and a body must arrive within bodyTimeout (the connection is then
// closed), so a slow or huge body cannot hold a descriptor. Idle
// keep-alive connections close after idleTimeout.
const (
	idleTimeout     = 60 * time.Second
	maxHeaderBytes  = 8 << 10
	maxBodyBytes    = 1 << 10
	shutdownTimeout = 5 * time.Second
)

// readHeaderTimeout and bodyTimeout are variables so that tests can
// shorten them.
var (
	readHeaderTimeout = 5 * time.Second
	bodyTimeout       = 10 * time.Second
)

// limitBody refuses a GET that carries a body (ContentLength -1 is a
// chunked one) and a body declared over the limit, caps any other body and
// gives it bodyTimeout to arrive; other methods go on to h, which answers
// them 405.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
			writeError(w, errorf(http.StatusBadRequest, "%s takes no request body", r.URL.Path))
			return
		}
		limit := bodyLimit(r)
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			writeError(w, errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes: %s takes at most %d", r.ContentLength, r.URL.Path, limit))
			return
		}
		if r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(bodyTimeout)); err == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the connection's read deadline once its body has been
// read, so that a handler that takes long after reading it is not
// cancelled by the server's wait for the next request.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Listen creates the control socket at path: it creates the parent
// directory (0755), replaces a stale socket file that nothing answers on,
// refuses to take over a live one, and makes the socket 0600.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// removeStale removes the socket file at path if it exists and nothing
// accepts connections on it.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: file exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another instance is listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	slog.Info("removing stale control socket", "path", path)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("control socket: removing stale %s: %w", path, err)
	}
	return nil
}

// Serve serves h on l until ctx is cancelled, then shuts down gracefully:
// open watch streams end (their request contexts derive from ctx) and
// requests in flight get a few seconds to finish. It returns nil after a
// shutdown caused by ctx, or the error that stopped serving.
func Serve(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           limitBody(h),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("control API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("control API shutdown: %w", err)
	}
	<-errc // http.ErrServerClosed
	return err
}
