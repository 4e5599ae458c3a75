package config

import (
	_ "embed"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/uswitch-dev/uswitch/clock"
)

//go:embed default.toml
var defaultTOML []byte

// Default returns the embedded default topology that `uswitch run` uses
// without --config, resolved, and its text.
func Default() (*Plan, []byte) {
	p, err := Parse(defaultTOML, "default.toml")
	if err != nil {
		panic("config: the embedded default.toml is invalid: " + err.Error())
	}
	return p, defaultTOML
}

// Load reads and parses the file at path.
func Load(path string) (*Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Parse validates a net.toml and resolves it into a Plan. filename only
// names the file in errors. The error is an *Error, or several joined with
// errors.Join, sorted by line.
func Parse(data []byte, filename string) (*Plan, error) {
	return parseData(data, filename, false)
}

// parseData is Parse; attach accepts the keys of attachments (ParseLive).
func parseData(data []byte, filename string, attach bool) (*Plan, error) {
	var raw rawConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, decodeError(filename, err)
	}
	p := &parser{file: filename, loc: newLocator(string(data)), what: map[string]string{}, attach: attach}
	plan := p.plan(&raw)
	p.unknownKeys(md)
	if len(p.errs) > 0 {
		return nil, joinErrors(p.errs)
	}
	return plan, nil
}

// The file as decoded. Values are `any` so that one of the wrong type is
// reported by the checks below, with its object and line, and does not stop
// the decoding.
type rawConfig struct {
	Name     any           `toml:"name"`
	Defaults rawDefaults   `toml:"defaults"`
	Uplink   *rawUplink    `toml:"uplink"`
	DNS      rawDNS        `toml:"dns"`
	Network  []rawNetwork  `toml:"network"`
	Endpoint []rawEndpoint `toml:"endpoint"`
	Rule     []rawRule     `toml:"rule"`
}

type rawDefaults struct {
	FDBAgeing    any `toml:"fdb_ageing"`
	FDBMax       any `toml:"fdb_max"`
	ConntrackMax any `toml:"conntrack_max"`
	PublishRange any `toml:"publish_range"`
	PortSecurity any `toml:"port_security"`
	Offload      any `toml:"offload"`
	BusyPoll     any `toml:"busy_poll"`
	CPULatency   any `toml:"cpu_latency"`
}

type rawUplink struct {
	Address       any `toml:"address"`
	HostAddress   any `toml:"host_address"`
	Address6      any `toml:"address6"`
	HostAddress6  any `toml:"host_address6"`
	Netns         any `toml:"netns"`
	Routes        any `toml:"routes"`
	UserlandProxy any `toml:"userland_proxy"`
}

type rawDNS struct {
	Upstream any `toml:"upstream"`
}

type rawNetwork struct {
	Name        any `toml:"name"`
	Subnet      any `toml:"subnet"`
	Gateway     any `toml:"gateway"`
	Subnet6     any `toml:"subnet6"`
	Gateway6    any `toml:"gateway6"`
	Masquerade  any `toml:"masquerade"`
	Masquerade6 any `toml:"masquerade6"`
	Internal    any `toml:"internal"`
	Isolate     any `toml:"isolate"`
	DNS         any `toml:"dns"`
	MTU         any `toml:"mtu"`
}

type rawEndpoint struct {
	Name         any            `toml:"name"`
	Mode         any            `toml:"mode"`
	Link         any            `toml:"link"`
	Netns        any            `toml:"netns"`
	PortSecurity any            `toml:"port_security"`
	Network      any            `toml:"network"`
	IP           any            `toml:"ip"`
	IP6          any            `toml:"ip6"`
	MAC          any            `toml:"mac"`
	Aliases      any            `toml:"aliases"`
	Publish      any            `toml:"publish"`
	Interface    []rawInterface `toml:"interface"`
	// Attachments only (ParseLive).
	NetnsPath   any `toml:"netns_path"`
	Ifname      any `toml:"ifname"`
	ContainerID any `toml:"container_id"`
}

type rawInterface struct {
	Network any `toml:"network"`
	IP      any `toml:"ip"`
	IP6     any `toml:"ip6"`
	MAC     any `toml:"mac"`
}

type rawRule struct {
	Hook   any `toml:"hook"`
	Src    any `toml:"src"`
	Dst    any `toml:"dst"`
	Proto  any `toml:"proto"`
	Sport  any `toml:"sport"`
	Dport  any `toml:"dport"`
	In     any `toml:"in"`
	Out    any `toml:"out"`
	State  any `toml:"state"`
	Action any `toml:"action"`
	To     any `toml:"to"`
}

// parser holds the state of one Parse.
type parser struct {
	file string
	loc  *locator
	errs []*Error
	what map[string]string // table → the object it describes, for messages
	// attach accepts attachments' keys (ParseLive).
	attach bool

	nets    map[string]*netState // by name; the first of duplicates
	netList []*netState          // the same, in file order
	eps     map[string]*epState  // by name; the first of duplicates
}

// scope is where values come from: a table of the file (for lines) and the
// object it describes (for messages).
type scope struct {
	p     *parser
	table string // locator path: "", "defaults", "endpoint[1]", ...
	what  string // `endpoint "web"`; "" at the top level
}

// scope returns the scope of table, describing it as what.
func (p *parser) scope(table, what string) scope {
	p.what[table] = what
	return scope{p, table, what}
}

// errorf reports a problem with key (or with the whole table when key is
// not in it).
func (s scope) errorf(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.what != "" {
		msg = s.what + ": " + msg
	}
	s.p.errs = append(s.p.errs, &Error{File: s.p.file, Line: s.p.loc.line(s.table, key), Msg: msg})
}

// str returns a string value; ok is false when it is absent or not a string
// (which is reported).
func (s scope) str(key string, v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		return v, true
	}
	s.errorf(key, "%s must be a string, not %s", key, typeName(v))
	return "", false
}

// required is str for a key that must be present.
func (s scope) required(key string, v any) (string, bool) {
	if v == nil {
		s.errorf(key, "%s is required", key)
		return "", false
	}
	return s.str(key, v)
}

// boolean returns a boolean value, or def.
func (s scope) boolean(key string, v any, def bool) bool {
	switch v := v.(type) {
	case nil:
		return def
	case bool:
		return v
	}
	s.errorf(key, "%s must be true or false, not %s", key, typeName(v))
	return def
}

// integer returns an integer value within [lo, hi], or def.
func (s scope) integer(key string, v any, def, lo, hi int) int {
	switch v := v.(type) {
	case nil:
		return def
	case int64:
		if v < int64(lo) || v > int64(hi) {
			s.errorf(key, "%s %d is out of range %d-%d", key, v, lo, hi)
			return def
		}
		return int(v)
	}
	s.errorf(key, "%s must be an integer, not %s", key, typeName(v))
	return def
}

// list returns an array value's elements.
func (s scope) list(key string, v any) []any {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		return v
	}
	s.errorf(key, "%s must be an array, not %s", key, typeName(v))
	return nil
}

// strings returns an array of strings.
func (s scope) strings(key string, v any) []string {
	var out []string
	for _, e := range s.list(key, v) {
		str, ok := e.(string)
		if !ok {
			s.errorf(key, "%s must hold strings, not %s", key, typeName(e))
			continue
		}
		out = append(out, str)
	}
	return out
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

// unknownKeys reports the keys that no field took; of an unknown table, only
// the table. TOML keys are case-sensitive, but the decoder matches fields
// case-insensitively: keys with capitals are unknown too.
func (p *parser) unknownKeys(md toml.MetaData) {
	unknown := map[string]bool{}
	for _, k := range md.Undecoded() {
		unknown[k.String()] = true
	}
	for _, k := range md.Keys() {
		if last := k[len(k)-1]; last != strings.ToLower(last) {
			unknown[k.String()] = true
		}
	}
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		ks := k.String()
		if !unknown[ks] || seen[ks] || len(k) > 1 && unknown[k[:len(k)-1].String()] {
			continue
		}
		seen[ks] = true
		parent, key := strings.Join(k[:len(k)-1], "."), k[len(k)-1]
		found := p.loc.find(parent, key)
		if len(found) == 0 {
			found = []tableKey{{parent, key}}
		}
		for _, f := range found {
			scope{p, f.table, p.what[f.table]}.errorf(key, "unknown key %q", key)
		}
	}
}

// plan checks and resolves the whole file.
func (p *parser) plan(r *rawConfig) *Plan {
	top := p.scope("", "")
	plan := &Plan{Name: name(top, r.Name)}
	plan.Defaults = defaults(p.scope("defaults", "defaults"), &r.Defaults)
	if r.Uplink != nil {
		plan.Uplink = uplink(p.scope("uplink", "uplink"), r.Uplink, plan.Name)
	}
	plan.DNS = dns(p.scope("dns", "dns"), &r.DNS)
	plan.Networks = p.networks(r.Network, plan.Uplink)
	plan.Endpoints = p.endpoints(r.Endpoint, plan.Defaults)
	plan.Rules = p.rules(r.Rule, plan.Uplink != nil)
	return plan
}

var instanceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// maxInstanceName leaves room for "-up" in a 15-character interface name.
const maxInstanceName = 15 - len("-up")

func name(s scope, v any) string {
	name, ok := s.required("name", v)
	if ok && (!instanceName.MatchString(name) || len(name) > maxInstanceName) {
		s.errorf("name", "name %q must be 1-%d characters of a-z, 0-9 and '-' (it prefixes the host device %q)",
			name, maxInstanceName, name+"-up")
	}
	return name
}

func defaults(s scope, r *rawDefaults) Defaults {
	d := Defaults{
		FDBAgeing:    clock.Duration(300 * time.Second),
		PublishRange: [2]uint16{32768, 60999},
		FDBMax:       s.integer("fdb_max", r.FDBMax, 8192, 1, 1<<30),
		ConntrackMax: s.integer("conntrack_max", r.ConntrackMax, DefaultConntrackMax(), 1, 1<<30),
		PortSecurity: s.boolean("port_security", r.PortSecurity, true),
		Offload:      s.boolean("offload", r.Offload, true),
		BusyPoll:     s.boolean("busy_poll", r.BusyPoll, true),
		CPULatency:   s.boolean("cpu_latency", r.CPULatency, false),
	}
	if v, ok := s.str("fdb_ageing", r.FDBAgeing); ok {
		switch age, err := time.ParseDuration(v); {
		case err != nil:
			s.errorf("fdb_ageing", "fdb_ageing %q is not a duration like \"300s\" or \"5m\"", v)
		case age <= 0:
			s.errorf("fdb_ageing", "fdb_ageing %q must be positive", v)
		default:
			d.FDBAgeing = clock.Duration(age)
		}
	}
	if v, ok := s.str("publish_range", r.PublishRange); ok {
		if pr, err := parsePortRange(v); err != nil {
			s.errorf("publish_range", "publish_range %q: %v", v, err)
		} else {
			d.PublishRange = pr
		}
	}
	return d
}

func uplink(s scope, r *rawUplink, name string) *Uplink {
	u := &Uplink{
		HostDevice:    name + "-up",
		Routes:        s.boolean("routes", r.Routes, true),
		UserlandProxy: s.boolean("userland_proxy", r.UserlandProxy, true),
	}
	u.Address = uplinkAddress(s, "address", r.Address)
	u.HostAddress = uplinkAddress(s, "host_address", r.HostAddress)
	if r.Address6 != nil || r.HostAddress6 != nil {
		u.Address6 = uplinkAddress6(s, "address6", r.Address6)
		u.HostAddress6 = uplinkAddress6(s, "host_address6", r.HostAddress6)
	}
	hostBeside(s, "address6", u.Address6, u.HostAddress6)
	if u.Address.IsValid() {
		u.MAC = derivedMAC(u.Address.Addr())
	}
	hostBeside(s, "address", u.Address, u.HostAddress)
	if ns, ok := s.str("netns", r.Netns); ok && ns != "" {
		if !validNetns(ns) {
			s.errorf("netns", "netns %q is not a valid namespace name", ns)
		}
		u.Netns = ns
	}
	return u
}

// hostBeside checks the host's address host (key host_<key>) against the
// uplink's address addr (key key) of the same family: one subnet, two
// addresses. Either invalid (absent or reported) is not checked.
func hostBeside(s scope, key string, addr, host netip.Prefix) {
	if !addr.IsValid() || !host.IsValid() {
		return
	}
	hkey := "host_" + key
	switch {
	case addr.Masked() != host.Masked():
		s.errorf(hkey, "%s %s and %s %s are not in the same subnet", hkey, host, key, addr)
	case addr.Addr() == host.Addr():
		s.errorf(hkey, "%s %s is the same address as %s", hkey, host, key)
	}
}

// uplinkAddress parses an address with its prefix length ("10.250.0.2/30").
func uplinkAddress(s scope, key string, v any) netip.Prefix {
	str, ok := s.required(key, v)
	if !ok {
		return netip.Prefix{}
	}
	pfx, err := netip.ParsePrefix(str)
	if err != nil || !pfx.Addr().Is4() {
		s.errorf(key, "%s %q is not an IPv4 address with a prefix length, like 10.250.0.2/30", key, str)
		return netip.Prefix{}
	}
	if msg := checkBits(pfx); msg != "" {
		s.errorf(key, "%s %s: %s", key, str, msg)
		return netip.Prefix{}
	}
	if msg := hostAddress(pfx.Addr(), pfx.Masked()); msg != "" {
		s.errorf(key, "%s %s is %s", key, str, msg)
		return netip.Prefix{}
	}
	return pfx
}

// uplinkAddress6 parses an IPv6 address with its prefix length
// ("fd00:ff::2/64"): unique local or global, /16 to /127, not the
// subnet-router anycast address of its prefix (but on a /127, RFC 6164).
func uplinkAddress6(s scope, key string, v any) netip.Prefix {
	str, ok := s.required(key, v)
	if !ok {
		return netip.Prefix{}
	}
	pfx, err := netip.ParsePrefix(str)
	switch {
	case err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6() || pfx.Addr().Zone() != "":
		s.errorf(key, "%s %q is not an IPv6 address with a prefix length, like fd00:ff::2/64", key, str)
	case pfx.Bits() < 16 || pfx.Bits() > 127:
		s.errorf(key, "%s %s: the prefix length must be between /16 and /127", key, str)
	case !ula.Contains(pfx.Addr()) && !global.Contains(pfx.Addr()):
		s.errorf(key, "%s %s is neither unique local (fc00::/7) nor global unicast (2000::/3)", key, str)
	case pfx.Addr() == pfx.Masked().Addr() && pfx.Bits() < 127:
		s.errorf(key, "%s %s is the subnet-router anycast address of its prefix", key, str)
	default:
		return pfx
	}
	return netip.Prefix{}
}

func dns(s scope, r *rawDNS) DNS {
	d := DNS{Upstream: []string{}}
	for _, up := range s.strings("upstream", r.Upstream) {
		if err := checkHostPort(up); err != nil {
			s.errorf("upstream", "upstream %q: %v", up, err)
			continue
		}
		d.Upstream = append(d.Upstream, up)
	}
	return d
}

// checkHostPort checks "ip:port" (IPv6 in brackets).
func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("want ip:port, like 127.0.0.53:53")
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("%q is not an IP address", host)
	}
	_, err = parsePort(port)
	return err
}

// parsePort parses a port number, 1-65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("port %q is not a number", s)
	case n < 1 || n > 65535:
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return uint16(n), nil
}

// parsePortRange parses "80" or "1000-2000" into an inclusive range.
func parsePortRange(s string) ([2]uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		hi = lo
	}
	l, err := parsePort(lo)
	if err != nil {
		return [2]uint16{}, err
	}
	h, err := parsePort(hi)
	if err != nil {
		return [2]uint16{}, err
	}
	if l > h {
		return [2]uint16{}, fmt.Errorf("range %d-%d is backwards", l, h)
	}
	return [2]uint16{l, h}, nil
}
