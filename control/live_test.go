package control

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/live"
)

// fakeChanger records what the handler asked for and answers as told.
type fakeChanger struct {
	mu      sync.Mutex
	fields  map[string]any
	removed []string
	err     error
}

func (f *fakeChanger) AddEndpoint(_ context.Context, fields map[string]any) (live.EndpointInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fields = fields
	if f.err != nil {
		return live.EndpointInfo{}, f.err
	}
	name, _ := fields["name"].(string)
	return live.EndpointInfo{Name: name, Interfaces: []live.InterfaceInfo{{Name: "eth0", Port: name, IP: "172.20.0.5/24"}}}, nil
}

func (f *fakeChanger) RemoveEndpoint(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, name)
	return f.err
}

func (f *fakeChanger) Endpoints() []live.EndpointInfo { return []live.EndpointInfo{{Name: "a"}} }

func (f *fakeChanger) AddNetwork(_ context.Context, fields map[string]any) (live.NetworkInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fields = fields
	return live.NetworkInfo{Name: "n"}, f.err
}

func (f *fakeChanger) RemoveNetwork(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, "network "+name)
	return f.err
}

func (f *fakeChanger) Networks() []live.NetworkInfo { return []live.NetworkInfo{{Name: "front"}} }

func (f *fakeChanger) Apply(_ context.Context, data []byte) (live.Changes, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fields = map[string]any{"toml": string(data)}
	return live.Changes{{Op: "+", Kind: "endpoint", Name: "x"}}, f.err
}

func serveLive(t *testing.T, c Changer) *Client {
	t.Helper()
	l := newLab(t)
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, NewHandlerWith(l.dp, c)) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return NewClient(path)
}

func request(t *testing.T, c *Client, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://uswitch"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := c.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestLiveCalls(t *testing.T) {
	f := &fakeChanger{}
	c := serveLive(t, f)

	var info live.EndpointInfo
	require.NoError(t, c.Post(context.Background(), "/v1/endpoints", "application/json",
		[]byte(`{"name":"web","network":"front","publish":[8080],"netns_path":"/proc/1/ns/net"}`), &info))
	require.Equal(t, "web", info.Name)
	require.Equal(t, "front", f.fields["network"])
	require.Equal(t, []any{json.Number("8080")}, f.fields["publish"], "numbers are kept exact")
	status, body := request(t, c, "POST", "/v1/endpoints", `{"name":"x"}`)
	require.Equal(t, http.StatusCreated, status, body)

	var list []live.EndpointInfo
	require.NoError(t, c.GetJSON(context.Background(), "/v1/endpoints", &list))
	require.Equal(t, "a", list[0].Name)
	var nets []live.NetworkInfo
	require.NoError(t, c.GetJSON(context.Background(), "/v1/networks", &nets))
	require.Equal(t, "front", nets[0].Name)

	// A name with '/', escaped in the path.
	status, body = request(t, c, "DELETE", "/v1/endpoints/cni-0123456789ab%2Fnet1", "")
	require.Equal(t, http.StatusNoContent, status, body)
	require.Empty(t, body)
	require.NoError(t, c.Delete(context.Background(), "/v1/networks/"+PathEscape("back")))
	require.Equal(t, []string{"cni-0123456789ab/net1", "network back"}, f.removed)

	var changes live.Changes
	require.NoError(t, c.Post(context.Background(), "/v1/apply", "application/toml", []byte("name = \"x\"\n"), &changes))
	require.Equal(t, "name = \"x\"\n", f.fields["toml"])
	require.Equal(t, "x", changes[0].Name)
}

func TestLiveErrors(t *testing.T) {
	f := &fakeChanger{}
	c := serveLive(t, f)
	for _, tc := range []struct {
		method, path, body string
		err                error
		status             int
		msg                string
		line               int
	}{
		{"POST", "/v1/endpoints", `not json`, nil, 400, "request body: want a JSON object", 0},
		{"POST", "/v1/endpoints", `null`, nil, 400, "not null", 0},
		{"POST", "/v1/endpoints", `{}`, &live.Error{Status: 409, Msg: `endpoint "a" already exists`}, 409, "already exists", 0},
		{"POST", "/v1/apply", `x`, &live.Error{Status: 400, Line: 7, Msg: `endpoint "a": ip taken`}, 400, "ip taken", 7},
		{"DELETE", "/v1/endpoints/zz", ``, &live.Error{Status: 404, Msg: `no endpoint "zz"`}, 404, `no endpoint "zz"`, 0},
		{"PUT", "/v1/endpoints", ``, nil, 405, "use GET or POST", 0},
		{"GET", "/v1/endpoints/a", ``, nil, 405, "use DELETE", 0},
		{"GET", "/v1/apply", ``, nil, 405, "use POST", 0},
		{"GET", "/v1/endpoints?x=1", ``, nil, 400, "unknown query parameter", 0},
		{"POST", "/v1/networks", `[1]`, nil, 400, "want a JSON object", 0},
	} {
		f.mu.Lock()
		f.err = tc.err
		f.mu.Unlock()
		status, body := request(t, c, tc.method, tc.path, tc.body)
		require.Equal(t, tc.status, status, "%s %s: %s", tc.method, tc.path, body)
		var eb errorBody
		require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
		require.Contains(t, eb.Error, tc.msg)
		require.Equal(t, tc.line, eb.Line)
	}
	// A body beyond the cap is refused, not read whole.
	status, _ := request(t, c, "POST", "/v1/apply", strings.Repeat("#", maxChangeBytes+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
}

func TestNoLiveCallsWithoutChanger(t *testing.T) {
	l := newLab(t)
	c := serve(t, l.dp)
	status, _, _ := rawGet(t, c, "GET", "/v1/endpoints")
	require.Equal(t, http.StatusNotFound, status)
}
