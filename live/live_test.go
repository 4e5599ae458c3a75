package live

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/uswitch-dev/uswitch/config"
)

const labTOML = `
name = "lab"

[uplink]
address = "10.250.0.2/30"
host_address = "10.250.0.1/30"

[[network]]
name = "front"
subnet = "172.20.0.0/24"

[[endpoint]]
name = "web"
network = "front"
publish = ["8080:80"]
`

// refusals run before anything is made, so an instance with no topology or
// datapath answers them.
func newRefuser(t *testing.T) *Instance {
	t.Helper()
	plan, err := config.Parse([]byte(labTOML), "net.toml")
	require.NoError(t, err)
	return New(context.Background(), plan, nil, nil, slog.New(slog.DiscardHandler))
}

func status(t *testing.T, err error) (int, int, string) {
	t.Helper()
	var le *Error
	require.True(t, errors.As(err, &le), "%v is not a *live.Error", err)
	return le.Status, le.Line, le.Msg
}

func TestAddEndpointRefusals(t *testing.T) {
	in := newRefuser(t)
	for _, c := range []struct {
		fields map[string]any
		code   int
		msg    string
	}{
		{map[string]any{"name": "web", "network": "front"}, http.StatusConflict, `endpoint "web" already exists`},
		{map[string]any{"name": "x", "network": "front", "ip": "172.20.0.2"}, http.StatusBadRequest, `endpoint "x": ip 172.20.0.2 is already taken by endpoint "web"`},
		{map[string]any{"name": "x", "network": "back"}, http.StatusBadRequest, `network "back" does not exist`},
		{map[string]any{"name": "x", "network": "front", "publish": []any{"8080:81"}}, http.StatusBadRequest, `host port 8080/tcp is published twice`},
		{map[string]any{"name": "x", "network": "front", "colour": "red"}, http.StatusBadRequest, `unknown key "colour"`},
		{map[string]any{"name": "x", "network": "front", "ifname": "eth1"}, http.StatusBadRequest, "ifname applies only to an attachment"},
		{map[string]any{"name": "cni-abc/eth1", "network": "front"}, http.StatusBadRequest, "name must be"},
		{map[string]any{"container_id": "0123456789abcdef", "netns_path": "/nonexistent/ns", "network": "front"}, http.StatusBadRequest, `endpoint "cni-0123456789ab": netns_path`},
		{map[string]any{"name": "x", "netns_path": "relative", "network": "front"}, http.StatusBadRequest, "is not an absolute path"},
	} {
		_, err := in.AddEndpoint(context.Background(), c.fields)
		code, line, msg := status(t, err)
		require.Equal(t, c.code, code, msg)
		require.Contains(t, msg, c.msg)
		require.Zero(t, line, "a request's error has no line of the instance's text")
	}
	require.Len(t, in.Endpoints(), 1, "nothing was added")
}

func TestNetworkRefusals(t *testing.T) {
	in := newRefuser(t)
	_, err := in.AddNetwork(context.Background(), map[string]any{"name": "n2", "subnet": "172.20.0.128/25"})
	code, _, msg := status(t, err)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, msg, `overlaps network "front"`)
	_, err = in.AddNetwork(context.Background(), map[string]any{"name": "front", "subnet": "172.30.0.0/24"})
	code, _, _ = status(t, err)
	require.Equal(t, http.StatusConflict, code)
	code, _, msg = status(t, in.RemoveNetwork(context.Background(), "front"))
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, msg, "still has endpoints: [web]")
	code, _, _ = status(t, in.RemoveNetwork(context.Background(), "nope"))
	require.Equal(t, http.StatusNotFound, code)
	code, _, _ = status(t, in.RemoveEndpoint(context.Background(), "nope"))
	require.Equal(t, http.StatusNotFound, code)
	require.Len(t, in.Networks(), 1)
}

func TestApplyRefusalsAndNoChange(t *testing.T) {
	in := newRefuser(t)
	changes, err := in.Apply(context.Background(), []byte(labTOML))
	require.NoError(t, err)
	require.Empty(t, changes, "the running file again changes nothing")

	bad := labTOML + "\n[[network]]\nname = \"n2\"\nsubnet = \"172.20.0.0/16\"\n"
	_, err = in.Apply(context.Background(), []byte(bad))
	code, line, msg := status(t, err)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, strings.Count(bad, "\n"), line, "the line of the offending subnet")
	require.Contains(t, msg, "overlaps")

	_, err = in.Apply(context.Background(), []byte(strings.Replace(labTOML, `host_address = "10.250.0.1/30"`, "host_address = \"10.250.0.1/30\"\nroutes = false", 1)))
	code, _, msg = status(t, err)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "uplink.routes cannot change while the instance runs: restart it to change it", msg)

	_, err = in.Apply(context.Background(), []byte(`name = "lab"`+"\n[[endpoint]]\nname = \"x\"\nnetns_path = \"/proc/1/ns/net\"\nnetwork = \"front\"\n"))
	_, _, msg = status(t, err)
	require.Contains(t, msg, `unknown key "netns_path"`, "attachments are the API's, not a file's")
}

func TestEndpointInfo(t *testing.T) {
	in := newRefuser(t)
	eps := in.Endpoints()
	require.Equal(t, EndpointInfo{Name: "web", Mode: "bridge", Netns: "web", NetnsPath: "/var/run/netns/web",
		Interfaces: []InterfaceInfo{{Name: "eth0", Port: "web", Network: "front", IP: "172.20.0.2/24", MAC: "02:42:ac:14:00:02", Gateway: "172.20.0.1"}},
		DNS:        []string{"172.20.0.1"}, Publish: []string{"8080:80/tcp"}}, eps[0])
	require.Equal(t, []NetworkInfo{{Name: "front", Subnet: "172.20.0.0/24", Gateway: "172.20.0.1", DNS: true, Isolate: true, Masquerade: true, MTU: 1500}}, in.Networks())
}
