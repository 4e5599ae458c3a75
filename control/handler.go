package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/uswitch-dev/uswitch/capture"
	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/nat"
	"github.com/uswitch-dev/uswitch/packet"
	"github.com/uswitch-dev/uswitch/router"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// Backend is what the control API inspects. *datapath.Datapath satisfies
// it; later features (capture) add methods here.
type Backend interface {
	// Networks returns the learning switches, one per network, in plan order.
	Networks() []*vswitch.Switch
	// Ports returns every port's identity and counters.
	Ports() []datapath.PortInfo
	// Router returns the router, for its neighbours and routes.
	Router() *router.Router
	// Tracker returns the connection tracker and its compiled rule set.
	Tracker() *nat.Tracker
	// Capture returns the hub that fans switched frames out to captures.
	Capture() *capture.Hub
	// BusyPoll returns the busy-poll thread's counters, false without one.
	BusyPoll() (datapath.BusyPollStats, bool)
}

// FDBEntry is one row of GET /v1/fdb.
type FDBEntry struct {
	Network string         `json:"network"`
	MAC     packet.MAC     `json:"mac"`
	VLAN    uint16         `json:"vlan"`
	Port    string         `json:"port"`
	Static  bool           `json:"static"`
	Age     clock.Duration `json:"age"` // since last seen; "1.5s" in JSON
}

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error string `json:"error"`
	Line  int    `json:"line,omitempty"` // of the request's file, when known
}

// httpError is an error with the status code it is answered with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// route is one endpoint: the method it accepts and what answers it.
type route struct {
	method string
	serve  http.Handler
}

// handler routes by exact path so that unknown paths and wrong methods get
// JSON errors.
type handler struct {
	b        Backend
	live     Changer // nil: the instance cannot be changed
	routes   map[string]route
	listings chan struct{} // a token per connection listing under way (conntrack.go)
}

// NewHandler returns the control API over b.
func NewHandler(b Backend) http.Handler { return NewHandlerWith(b, nil) }

// NewHandlerWith returns the control API over b, with the calls that change
// the running instance answered by c (live.go).
func NewHandlerWith(b Backend, c Changer) http.Handler {
	h := &handler{b: b, live: c, listings: make(chan struct{}, maxListings)}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(b),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
	h.routes = map[string]route{
		"/v1/fdb":              {http.MethodGet, apiFunc(h.fdb)},
		"/v1/ports":            {http.MethodGet, apiFunc(h.ports)},
		"/v1/neigh":            {http.MethodGet, apiFunc(h.neigh)},
		"/v1/routes":           {http.MethodGet, apiFunc(h.routeTable)},
		"/v1/conntrack":        {http.MethodGet, apiFunc(h.conntrack)},
		"/v1/rules":            {http.MethodGet, apiFunc(h.rules)},
		"/v1/capture":          {http.MethodGet, apiFunc(h.capture)},
		"/v1/trace":            {http.MethodGet, apiFunc(h.trace)},
		"/metrics":             {http.MethodGet, metrics},
		"/debug/pprof/profile": {http.MethodGet, apiFunc(h.cpuProfile)},
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.live != nil && h.serveLive(w, r) {
		return
	}
	rt, ok := h.routes[r.URL.Path]
	if !ok {
		writeError(w, errorf(http.StatusNotFound, "no such endpoint: %s", r.URL.Path))
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeError(w, errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s (use %s)", r.Method, r.URL.Path, rt.method))
		return
	}
	rt.serve.ServeHTTP(w, r)
}

// apiFunc adapts a handler that returns an error: nothing has been written
// when it returns one, and the error becomes the JSON error response.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

func (f apiFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		writeError(w, err)
	}
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	body := errorBody{Error: err.Error()}
	var he *httpError
	var ce changeError
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.As(err, &ce):
		code, body.Line = ce.HTTPStatus(), ce.ErrorLine()
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		slog.Debug("control API: writing response", "err", err)
	}
}

// query checks that q names only allowed parameters, each at most once.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed query: %v", err)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, errorf(http.StatusBadRequest, "unknown query parameter %q: %s takes none", k, r.URL.Path)
			}
			return nil, errorf(http.StatusBadRequest, "unknown query parameter %q (%s takes %s)", k, r.URL.Path, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, errorf(http.StatusBadRequest, "query parameter %q given %d times", k, len(v))
		}
	}
	return q, nil
}

// boolParam parses a boolean query parameter; present without a value
// (?watch) means true.
func boolParam(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errorf(http.StatusBadRequest, "query parameter %s=%q: want 1, 0, true or false", name, v)
	}
	return b, nil
}

// networks returns every switch, or only the one named by ?network=.
func (h *handler) networks(q url.Values) ([]*vswitch.Switch, error) {
	all := h.b.Networks()
	if !q.Has("network") {
		return all, nil
	}
	name := q.Get("network")
	for _, sw := range all {
		if sw.Name() == name {
			return []*vswitch.Switch{sw}, nil
		}
	}
	return nil, errorf(http.StatusNotFound, "no network %q", name)
}

// fdb answers GET /v1/fdb[?network=N][&port=P][&mac=M][&watch=1]: the
// rows streamed switch by switch, a chunk at a time (vswitch.Switch.Each),
// so that listing a million stations costs memory for a chunk, not for
// the table. port and mac filter on the server side, as `bridge fdb show
// brport P` and an address do. At most maxListings listings (of the FDB
// and of conntrack) run at once.
func (h *handler) fdb(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "network", "port", "mac", "watch")
	if err != nil {
		return err
	}
	watch, err := boolParam(q, "watch")
	if err != nil {
		return err
	}
	nets, err := h.networks(q)
	if err != nil {
		return err
	}
	if watch {
		if q.Has("port") || q.Has("mac") {
			return errorf(http.StatusBadRequest, "query parameters port and mac do not apply to watch=1")
		}
		return watchFDB(w, r, nets)
	}
	f, err := fdbFilter(q, nets)
	if err != nil {
		return err
	}
	return h.list(w, "the FDB", func(a *jsonArray) error {
		var b []byte
		for _, sw := range nets {
			name := sw.Name()
			err := sw.Each(f, func(e *vswitch.Entry) error {
				row := FDBEntry{
					Network: name, MAC: e.MAC, VLAN: e.VLAN, Port: e.Port,
					Static: e.Static, Age: clock.Duration(e.Age),
				}
				b = row.appendJSON(b[:0])
				return a.addRaw(b)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// fdbFilter reads /v1/fdb's port and mac into a filter. A port that none
// of nets has is 404, as `bridge fdb show brport` answers for a missing
// device.
func fdbFilter(q url.Values, nets []*vswitch.Switch) (vswitch.Filter, error) {
	var f vswitch.Filter
	if q.Has("mac") {
		m, err := packet.ParseMAC(q.Get("mac"))
		if err != nil || m == (packet.MAC{}) {
			return f, errorf(http.StatusBadRequest, "query parameter mac=%q: not a MAC address", q.Get("mac"))
		}
		f.MAC = m
	}
	if q.Has("port") {
		f.Port = q.Get("port")
		if !slices.ContainsFunc(nets, func(sw *vswitch.Switch) bool { return sw.Port(f.Port) != nil }) {
			return f, errorf(http.StatusNotFound, "no port %q", f.Port)
		}
	}
	return f, nil
}

// watchFDB streams the FDB events of nets as newline-delimited JSON, one
// flush per event, until the client goes away or the server shuts down.
func watchFDB(w http.ResponseWriter, r *http.Request, nets []*vswitch.Switch) error {
	rc := http.NewResponseController(w)
	ctx, stop := context.WithCancel(r.Context())
	var wg sync.WaitGroup
	defer wg.Wait() // runs after stop
	defer stop()

	events := make(chan vswitch.Event)
	for _, sw := range nets {
		c, cancel := sw.Subscribe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			for {
				select {
				case e := <-c:
					select {
					case events <- e:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		slog.Warn("control API: watch stream cannot flush", "err", err)
		return nil
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case e := <-events:
			if err := enc.Encode(e); err != nil {
				return nil // client gone
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// ports answers GET /v1/ports.
func (h *handler) ports(w http.ResponseWriter, r *http.Request) error {
	if _, err := query(r); err != nil {
		return err
	}
	out := h.b.Ports()
	if out == nil {
		out = []datapath.PortInfo{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
