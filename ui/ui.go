// Package ui is `uswitch ui`: a web page, embedded in the binary, that
// draws a running instance's topology as SVG (networks as switches, their
// endpoints, the router with its gateway ports, the uplink), each link
// with its live rate and drops highlighted, the MAC table of a network,
// the router's routes, neighbours and connections, and a trace form that
// runs the synthetic tracer and draws its path on the picture. It proxies
// the read-only GET calls of the control API; nothing can be changed
// through it.
package ui

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/uswitch-dev/uswitch/control"
)

//go:embed index.html
var files embed.FS

// readOnly are the control API paths the page may read.
var readOnly = []string{"/v1/ports", "/v1/fdb", "/v1/routes", "/v1/neigh", "/v1/conntrack", "/v1/trace", "/v1/networks", "/v1/endpoints"}

// Handler serves the page at / and the read-only control API of the
// instance c talks to under /api (GET /api/v1/ports, ...).
func Handler(c *control.Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := files.ReadFile("index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(b)
	})
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/api")
		if r.Method != http.MethodGet {
			http.Error(w, `{"error":"the page is read-only: only GET"}`, http.StatusMethodNotAllowed)
			return
		}
		if !slices.Contains(readOnly, path) || r.URL.Query().Has("watch") || r.URL.Query().Has("live") {
			http.Error(w, `{"error":"not proxied"}`, http.StatusNotFound)
			return
		}
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		body, err := c.Stream(ctx, path)
		if err != nil {
			code := http.StatusBadGateway
			var se *control.StatusError
			if errors.As(err, &se) {
				code = se.Status
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		defer body.Close()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if _, err := io.Copy(w, body); err != nil {
			slog.Debug("ui: proxying", "path", path, "err", err)
		}
	})
	return mux
}
