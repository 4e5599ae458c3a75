package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Changes to a running instance are validated as `check` validates a file:
// the running plan is written back as a net.toml (Source) with every
// address, MAC and host port pinned, the change is made to that text (a
// table appended, or one left out), and the result is parsed again. So an
// addition is refused with the same message a file holding it would get,
// and what already runs keeps its addresses.

// Attachment names: "cni-" and the first 12 characters of a container ID,
// "/IFNAME" added when the interface is not eth0. Valid for attachments
// only.
var attachmentName = regexp.MustCompile(`^cni-[A-Za-z0-9_.-]{1,12}(/[A-Za-z0-9_.-]{1,15})?$`)

// AttachmentName is the name of the attachment of container containerID's
// interface ifname: "cni-" + the first 12 characters of the ID, plus
// "/IFNAME" when ifname is not eth0.
func AttachmentName(containerID, ifname string) string {
	id := containerID
	if len(id) > 12 {
		id = id[:12]
	}
	name := "cni-" + id
	if ifname != "" && ifname != "eth0" {
		name += "/" + ifname
	}
	return name
}

// IsAttachment reports whether e is an attachment: an interface in a
// namespace uswitch does not own (netns_path), such as a CNI plugin's.
func (e *Endpoint) IsAttachment() bool { return e.NetnsPath != "" }

// ParseLive is Parse for the text of a running instance: it also accepts
// the keys of attachments (netns_path, ifname, container_id) in
// [[endpoint]] tables, which a net.toml may not hold.
func ParseLive(data []byte, filename string) (*Plan, error) {
	return parseData(data, filename, true)
}

// Source writes the plan as a net.toml that ParseLive resolves to the same
// plan: every default, address, MAC and published host port written out.
func (p *Plan) Source() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "name = %s\n\n[defaults]\n", q(p.Name))
	d := p.Defaults
	fmt.Fprintf(&b, "fdb_ageing = %s\nfdb_max = %d\nconntrack_max = %d\npublish_range = \"%d-%d\"\nport_security = %t\noffload = %t\nbusy_poll = %t\ncpu_latency = %t\n",
		q(time.Duration(d.FDBAgeing).String()), d.FDBMax, d.ConntrackMax, d.PublishRange[0], d.PublishRange[1], d.PortSecurity, d.Offload, d.BusyPoll, d.CPULatency)
	if u := p.Uplink; u != nil {
		fmt.Fprintf(&b, "\n[uplink]\naddress = %s\nhost_address = %s\nnetns = %s\nroutes = %t\nuserland_proxy = %t\n",
			q(u.Address.String()), q(u.HostAddress.String()), q(u.Netns), u.Routes, u.UserlandProxy)
		if u.Address6.IsValid() {
			fmt.Fprintf(&b, "address6 = %s\nhost_address6 = %s\n", q(u.Address6.String()), q(u.HostAddress6.String()))
		}
	}
	fmt.Fprintf(&b, "\n[dns]\nupstream = %s\n", qs(p.DNS.Upstream))
	for _, n := range p.Networks {
		b.WriteString("\n")
		b.Write(NetworkSource(n))
	}
	for _, e := range p.Endpoints {
		b.WriteString("\n")
		b.Write(EndpointSource(e))
	}
	for _, r := range p.Rules {
		fmt.Fprintf(&b, "\n[[rule]]\nhook = %s\naction = %s\n", q(r.Hook), q(r.Action))
		if r.Src.IsValid() {
			fmt.Fprintf(&b, "src = %s\n", q(r.Src.String()))
		}
		if r.Dst.IsValid() {
			fmt.Fprintf(&b, "dst = %s\n", q(r.Dst.String()))
		}
		if r.Proto != "" {
			fmt.Fprintf(&b, "proto = %s\n", q(r.Proto))
		}
		for _, pr := range []struct {
			key string
			r   [2]uint16
		}{{"sport", r.Sport}, {"dport", r.Dport}} {
			if pr.r != [2]uint16{} {
				fmt.Fprintf(&b, "%s = \"%d-%d\"\n", pr.key, pr.r[0], pr.r[1])
			}
		}
		if r.In != "" {
			fmt.Fprintf(&b, "in = %s\n", q(r.In))
		}
		if r.Out != "" {
			fmt.Fprintf(&b, "out = %s\n", q(r.Out))
		}
		if len(r.State) > 0 {
			fmt.Fprintf(&b, "state = %s\n", qs(r.State))
		}
		if r.To != "" {
			fmt.Fprintf(&b, "to = %s\n", q(r.To))
		}
	}
	return b.Bytes()
}

// NetworkSource writes one resolved network as a [[network]] table.
func NetworkSource(n Network) []byte {
	b := fmt.Appendf(nil, "[[network]]\nname = %s\nsubnet = %s\ngateway = %s\nmasquerade = %t\ninternal = %t\nisolate = %t\ndns = %t\nmtu = %d\n",
		q(n.Name), q(n.Subnet.String()), q(n.Gateway.String()), n.Masquerade, n.Internal, n.Isolate, n.DNS, n.MTU)
	if n.Subnet6.IsValid() {
		b = fmt.Appendf(b, "subnet6 = %s\ngateway6 = %s\nmasquerade6 = %t\n", q(n.Subnet6.String()), q(n.Gateway6.String()), n.Masquerade6)
	}
	return b
}

// EndpointSource writes one resolved endpoint as an [[endpoint]] table
// with its addresses, MACs and host ports pinned.
func EndpointSource(e Endpoint) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "[[endpoint]]\nname = %s\n", q(e.Name))
	switch e.Mode {
	case ModeContainer:
		fmt.Fprintf(&b, "mode = %s\n", q(ModeContainer+":"+e.Container))
	default:
		fmt.Fprintf(&b, "mode = %s\n", q(e.Mode))
	}
	if (e.Mode == ModeBridge || e.Mode == ModeNone) && e.Netns != e.Name && e.Netns != "" {
		fmt.Fprintf(&b, "netns = %s\n", q(e.Netns))
	}
	if e.Mode != ModeBridge {
		return b.Bytes()
	}
	fmt.Fprintf(&b, "link = %s\nport_security = %t\n", q(e.Link), e.PortSecurity)
	if e.IsAttachment() {
		fmt.Fprintf(&b, "netns_path = %s\n", q(e.NetnsPath))
		if len(e.Interfaces) > 0 {
			fmt.Fprintf(&b, "ifname = %s\n", q(e.Interfaces[0].Name))
		}
		if e.ContainerID != "" {
			fmt.Fprintf(&b, "container_id = %s\n", q(e.ContainerID))
		}
	}
	if len(e.Aliases) > 0 {
		fmt.Fprintf(&b, "aliases = %s\n", qs(e.Aliases))
	}
	if len(e.Publish) > 0 {
		pubs := make([]string, len(e.Publish))
		for i, p := range e.Publish {
			pubs[i] = fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Proto)
		}
		fmt.Fprintf(&b, "publish = %s\n", qs(pubs))
	}
	for _, ifc := range e.Interfaces {
		fmt.Fprintf(&b, "  [[endpoint.interface]]\n  network = %s\n  ip = %s\n  mac = %s\n", q(ifc.Network), q(ifc.IP.String()), q(ifc.MAC.String()))
		if ifc.IP6.IsValid() {
			fmt.Fprintf(&b, "  ip6 = %s\n", q(ifc.IP6.String()))
		}
	}
	return b.Bytes()
}

// q quotes s as a TOML basic string.
func q(s string) string {
	b, _ := json.Marshal(s) // JSON's escapes are TOML's
	return string(b)
}

// qs writes a TOML array of strings.
func qs(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = q(s)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// TableSource writes fields (decoded from JSON with UseNumber) as one
// [[kind]] table of a net.toml, so that a JSON request with the keys of
// [[endpoint]] or [[network]] is checked exactly as the file's tables are.
func TableSource(kind string, fields map[string]any) ([]byte, error) {
	norm, err := tomlValue(fields)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(map[string]any{kind: []any{norm}}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// tomlValue turns JSON values into what the TOML encoder writes as the
// same TOML values: json.Number into an integer (or a float).
func tomlValue(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %s: %w", v, err)
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if e == nil {
				continue // JSON null: as if the key were not given
			}
			n, err := tomlValue(e)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			out[k] = n
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			n, err := tomlValue(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case nil:
		return nil, errors.New("null in an array")
	}
	return v, nil
}

// Messages returns the messages of a Parse error without file and line
// (for a change made through the API, whose "file" is the running
// instance's text), and the line of the first when the text was the
// caller's own.
func Messages(err error) (msg string, line int) {
	var errs []*Error
	collect(err, &errs)
	if len(errs) == 0 {
		return err.Error(), 0
	}
	var ms []string
	for _, e := range errs {
		ms = append(ms, e.Msg)
	}
	return strings.Join(ms, "\n"), errs[0].Line
}

func collect(err error, into *[]*Error) {
	if e, ok := err.(*Error); ok {
		*into = append(*into, e)
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			collect(e, into)
		}
	}
}
