package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/uswitch-dev/uswitch/ui"
)

const uiSynopsis = "[--listen 127.0.0.1:9900] " + instanceSynopsis

func cmdUI(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveUI(ctx, args, func(addr string) { fmt.Printf("serving http://%s/\n", addr) })
}

// serveUI is `uswitch ui`: it serves the web page of the instance on a
// loopback address until ctx ends; ready is told the address once it
// listens.
func serveUI(ctx context.Context, args []string, ready func(addr string)) error {
	fs := newFlagSet("ui", uiSynopsis)
	var f inspectFlags
	f.registerInstance(fs)
	listen := fs.String("listen", "127.0.0.1:9900", "loopback `ADDR:PORT` to serve the page on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return flagError(fs, fmt.Errorf("--listen %q: %w", *listen, err))
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return flagError(fs, fmt.Errorf("--listen %q: the page is served on loopback only (127.0.0.1, ::1, localhost)", *listen))
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	srv := &http.Server{Handler: ui.Handler(c), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	ready(l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ui: %w", err)
	}
	slog.Debug("ui stopped")
	return nil
}
