package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// requestTimeout bounds one call to the instance. An ADD waits while the
// instance serializes other changes, so it is generous; a runtime's own
// timeout is usually longer still.
const requestTimeout = 2 * time.Minute

// attachRequest is the body of POST /v1/endpoints for a CNI attachment.
type attachRequest struct {
	Network     string   `json:"network"`
	NetnsPath   string   `json:"netns_path"`
	Ifname      string   `json:"ifname"`
	ContainerID string   `json:"container_id"`
	IP          string   `json:"ip,omitempty"`
	Link        string   `json:"link,omitempty"`
	Publish     []string `json:"publish,omitempty"`
}

// endpoint is an endpoint as GET /v1/endpoints and POST /v1/endpoints
// describe it.
type endpoint struct {
	Name        string   `json:"name"`
	NetnsPath   string   `json:"netns_path,omitempty"`
	ContainerID string   `json:"container_id,omitempty"`
	Interfaces  []iface  `json:"interfaces"`
	DNS         []string `json:"dns,omitempty"`
	Publish     []string `json:"publish,omitempty"`
}

// iface is one interface of an endpoint.
type iface struct {
	Name    string `json:"name"`
	Port    string `json:"port"`
	Network string `json:"network"`
	IP      string `json:"ip"` // address with the subnet's length: 172.20.0.5/24
	MAC     string `json:"mac"`
	Gateway string `json:"gateway"`
}

// network is a network as GET /v1/networks describes it.
type network struct {
	Name    string `json:"name"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
	DNS     bool   `json:"dns"`
	MTU     int    `json:"mtu"`
}

// daemon is a client of one instance's control API.
type daemon struct {
	socket string
	http   *http.Client
}

// newDaemon returns a client of the instance listening on socket.
func newDaemon(socket string) *daemon {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &daemon{socket: socket, http: &http.Client{Transport: tr}}
}

// errNotRunning says that nothing listens on the control socket: the
// instance is not running.
var errNotRunning = errors.New("the uswitch instance is not running")

// apiError is an error answer of the control API.
type apiError struct {
	Status int
	Msg    string
	Line   int
}

func (e *apiError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d)", e.Msg, e.Line)
	}
	return e.Msg
}

// isNotFound reports whether err is the API's 404.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// do sends one request; in (if not nil) is the JSON body, out (if not nil)
// receives the JSON answer of a 2xx status.
func (d *daemon) do(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://uswitch"+path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return d.requestError(method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		ae := &apiError{Status: resp.StatusCode}
		var eb struct {
			Error string `json:"error"`
			Line  int    `json:"line"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			ae.Msg, ae.Line = eb.Error, eb.Line
		} else {
			ae.Msg = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// requestError wraps errNotRunning when the socket is missing or refuses.
func (d *daemon) requestError(method, path string, err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (control socket %s)", errNotRunning, d.socket)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("control socket %s: %s %s: %w", d.socket, method, path, err)
}

// attach asks the instance to attach a container: POST /v1/endpoints.
func (d *daemon) attach(ctx context.Context, req attachRequest) (*endpoint, error) {
	var ep endpoint
	if err := d.do(ctx, http.MethodPost, "/v1/endpoints", req, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// detach removes the endpoint named name: DELETE /v1/endpoints/NAME. A
// missing endpoint is an apiError with status 404.
func (d *daemon) detach(ctx context.Context, name string) error {
	return d.do(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(name), nil, nil)
}

// endpoints lists the instance's endpoints: GET /v1/endpoints.
func (d *daemon) endpoints(ctx context.Context) ([]endpoint, error) {
	var eps []endpoint
	return eps, d.getJSON(ctx, "/v1/endpoints", &eps)
}

// networks lists the instance's networks: GET /v1/networks.
func (d *daemon) networks(ctx context.Context) ([]network, error) {
	var nets []network
	return nets, d.getJSON(ctx, "/v1/networks", &nets)
}

// getJSON is a GET through do, so errors are classified the same way.
func (d *daemon) getJSON(ctx context.Context, path string, v any) error {
	return d.do(ctx, http.MethodGet, path, nil, v)
}
