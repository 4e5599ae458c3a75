package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/live"
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

// daemon is the plugin's view of one instance's control API.
type daemon struct{ c *control.Client }

// newDaemon returns a client of the instance listening on socket.
func newDaemon(socket string) daemon { return daemon{control.NewClient(socket)} }

// isNotRunning reports whether err says that the instance is not running.
func isNotRunning(err error) bool { return errors.Is(err, control.ErrNotRunning) }

// statusOf is the HTTP status of an error answer, 0 for other errors.
func statusOf(err error) int {
	var se *control.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// attach asks the instance to attach a container: POST /v1/endpoints.
func (d daemon) attach(ctx context.Context, req attachRequest) (*live.EndpointInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("POST /v1/endpoints: %w", err)
	}
	var ep live.EndpointInfo
	if err := d.c.Post(ctx, "/v1/endpoints", "application/json", body, &ep); err != nil {
		return nil, err
	}
	return &ep, nil
}

// detach removes the endpoint named name: DELETE /v1/endpoints/NAME. An
// endpoint that is already gone is not an error.
func (d daemon) detach(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err := d.c.Delete(ctx, "/v1/endpoints/"+control.PathEscape(name))
	if statusOf(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// endpoints lists the instance's endpoints: GET /v1/endpoints.
func (d daemon) endpoints(ctx context.Context) ([]live.EndpointInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var eps []live.EndpointInfo
	return eps, d.c.GetJSON(ctx, "/v1/endpoints", &eps)
}

// networks lists the instance's networks: GET /v1/networks.
func (d daemon) networks(ctx context.Context) ([]live.NetworkInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var nets []live.NetworkInfo
	return nets, d.c.GetJSON(ctx, "/v1/networks", &nets)
}
