package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Server limits. There is no read or write timeout: watch streams live as
// long as their client, and a read deadline would cancel them. Requests
// are bounded instead by the time and size of their headers (a larger
// header gets 431; a client that does not finish its headers in time is
// disconnected) and by their body: every endpoint is a GET that takes
// none, so a GET with a body is refused with 400 and any body is cut at
// maxBodyBytes.
const (
	idleTimeout     = 60 * time.Second
	maxHeaderBytes  = 8 << 10
	maxBodyBytes    = 1 << 10
	shutdownTimeout = 5 * time.Second
)

// readHeaderTimeout is a variable so that tests can shorten it.
var readHeaderTimeout = 5 * time.Second

// limitBody refuses a GET that carries a body (ContentLength -1 is a
// chunked one) and caps any other body; other methods go on to h, which
// answers them 405.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
			writeError(w, errorf(http.StatusBadRequest, "%s takes no request body", r.URL.Path))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, bodyLimit(r))
		h.ServeHTTP(w, r)
	})
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
