package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/uswitch-dev/uswitch/live"
)

// Changer changes the running instance: *live.Instance.
type Changer interface {
	AddEndpoint(ctx context.Context, fields map[string]any) (live.EndpointInfo, error)
	RemoveEndpoint(ctx context.Context, name string) error
	Endpoints() []live.EndpointInfo
	AddNetwork(ctx context.Context, fields map[string]any) (live.NetworkInfo, error)
	RemoveNetwork(ctx context.Context, name string) error
	Networks() []live.NetworkInfo
	Apply(ctx context.Context, data []byte) (live.Changes, error)
}

// changeError is a refused change: its status, and the line of the
// caller's file it is about (*live.Error).
type changeError interface {
	error
	HTTPStatus() int
	ErrorLine() int
}

// maxChangeBytes caps the body of a POST (a JSON object, or a whole
// net.toml for /v1/apply).
const maxChangeBytes = 1 << 20

// bodyLimit is the most of a request's body that is read.
func bodyLimit(r *http.Request) int64 {
	if r.Method == http.MethodPost {
		return maxChangeBytes
	}
	return maxBodyBytes
}

// serveLive answers the calls that change the instance and reports whether
// r was one:
//
//	GET    /v1/endpoints          the endpoints, as POST answers each
//	POST   /v1/endpoints          add one: a JSON object with the keys of [[endpoint]]
//	DELETE /v1/endpoints/NAME     remove one (NAME path-escaped; it may hold '/')
//	GET    /v1/networks           the networks
//	POST   /v1/networks           add one: the keys of [[network]]
//	DELETE /v1/networks/NAME      remove one (refused while endpoints are on it)
//	POST   /v1/apply              make the instance match a net.toml (the body)
func (h *handler) serveLive(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.EscapedPath()
	if path == "/v1/apply" {
		apiFunc(h.apply).ServeHTTP(w, r)
		return true
	}
	for _, kind := range []string{"endpoints", "networks"} {
		base := "/v1/" + kind
		switch {
		case path == base:
			apiFunc(func(w http.ResponseWriter, r *http.Request) error { return h.collection(w, r, kind) }).ServeHTTP(w, r)
			return true
		case strings.HasPrefix(path, base+"/"):
			apiFunc(func(w http.ResponseWriter, r *http.Request) error {
				return h.member(w, r, kind, strings.TrimPrefix(path, base+"/"))
			}).ServeHTTP(w, r)
			return true
		}
	}
	return false
}

// collection answers GET and POST on /v1/endpoints and /v1/networks.
func (h *handler) collection(w http.ResponseWriter, r *http.Request, kind string) error {
	if _, err := query(r); err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
		if kind == "endpoints" {
			writeJSON(w, http.StatusOK, h.live.Endpoints())
		} else {
			writeJSON(w, http.StatusOK, h.live.Networks())
		}
		return nil
	case http.MethodPost:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return errorf(http.StatusRequestEntityTooLarge, "request body: %v", err)
		}
		fields, err := live.DecodeFields(body)
		if err != nil {
			return err
		}
		var out any
		if kind == "endpoints" {
			out, err = h.live.AddEndpoint(r.Context(), fields)
		} else {
			out, err = h.live.AddNetwork(r.Context(), fields)
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, out)
		return nil
	}
	w.Header().Set("Allow", "GET, POST")
	return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s (use GET or POST)", r.Method, r.URL.Path)
}

// apply answers POST /v1/apply: the body is a whole net.toml; the answer
// lists what changed.
func (h *handler) apply(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s (use POST)", r.Method, r.URL.Path)
	}
	if _, err := query(r); err != nil {
		return err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return errorf(http.StatusRequestEntityTooLarge, "request body: %v", err)
	}
	changes, err := h.live.Apply(r.Context(), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, changes)
	return nil
}

// member answers DELETE /v1/endpoints/NAME and /v1/networks/NAME.
func (h *handler) member(w http.ResponseWriter, r *http.Request, kind, escaped string) error {
	if r.Method != http.MethodDelete {
		w.Header().Set("Allow", "DELETE")
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s (use DELETE)", r.Method, r.URL.Path)
	}
	if _, err := query(r); err != nil {
		return err
	}
	name, err := url.PathUnescape(escaped)
	if err != nil || name == "" {
		return errorf(http.StatusBadRequest, "malformed name %q", escaped)
	}
	if kind == "endpoints" {
		err = h.live.RemoveEndpoint(r.Context(), name)
	} else {
		err = h.live.RemoveNetwork(r.Context(), name)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Post sends body (of type contentType) to path and decodes a 200 or 201
// answer into out (when not nil); another status becomes an error with the
// server's message.
func (c *Client) Post(ctx context.Context, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://uswitch"+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	req.Header.Set("Content-Type", contentType)
	return c.do(req, out)
}

// Delete deletes path; 204 is success.
func (c *Client) Delete(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://uswitch"+path, nil)
	if err != nil {
		return fmt.Errorf("DELETE %s: %w", path, err)
	}
	return c.do(req, nil)
}

// do sends req and decodes a successful answer into out.
func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		return c.requestError(req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// PathEscape escapes a name for a path segment, '/' included.
func PathEscape(name string) string { return url.PathEscape(name) }
