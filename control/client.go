package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// Client talks to a running instance over its control socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the instance listening on socketPath.
// Nothing is dialled until a request.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression: true,
	}
	return &Client{socket: socketPath, http: &http.Client{Transport: tr}}
}

// Socket returns the control socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// GetJSON gets path (e.g. "/v1/fdb?network=front") and decodes the JSON
// answer into v.
func (c *Client) GetJSON(ctx context.Context, path string, v any) error {
	body, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// Stream gets path and returns the open body of a streaming answer, such as
// the newline-delimited events of /v1/fdb?watch=1. Cancelling ctx or
// closing the body ends the stream.
func (c *Client) Stream(ctx context.Context, path string) (io.ReadCloser, error) {
	return c.get(ctx, path)
}

// get does a GET and returns the body of a 200 answer; any other status
// becomes an error carrying the server's message.
func (c *Client) get(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://uswitch"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.requestError(path, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	return nil, responseError(resp)
}

// ErrNotRunning is wrapped by the error of a request that found no
// instance: the control socket is missing or nothing listens on it.
var ErrNotRunning = errors.New("no uswitch instance is running")

// StatusError is an error answer of the API.
type StatusError struct {
	Status int    // the HTTP status
	Msg    string // the server's message, else the status and the start of the body
	Line   int    // the line of the caller's file it is about, 0 when none
}

// Error is the message, as the CLI prints it.
func (e *StatusError) Error() string { return e.Msg }

// responseError turns an error answer into a *StatusError: the server's
// JSON message when there is one, else the status and the start of the
// body.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Status: resp.StatusCode}
	var eb errorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
		se.Msg, se.Line = eb.Error, eb.Line
		return se
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	se.Msg = "control API: " + resp.Status
	if msg != "" {
		se.Msg += ": " + msg
	}
	return se
}

// requestError explains a failed request: a missing or refusing socket
// means no instance is running.
func (c *Client) requestError(path string, err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		if errors.Is(se.Err, syscall.ENOENT) || errors.Is(se.Err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (control socket %s: %v)", ErrNotRunning, c.socket, se)
		}
		return fmt.Errorf("control socket %s: %w", c.socket, se)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("control socket %s: GET %s: %w", c.socket, path, err)
}
