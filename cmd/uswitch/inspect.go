package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	vswitch "github.com/uswitch-dev/uswitch/switch"
)

// requestTimeout bounds one inspection request (not a watch).
const requestTimeout = 10 * time.Second

// inspectFlags are the flags every inspection command shares.
type inspectFlags struct {
	control string
	config  string
	output  outputFormat
	fs      *flag.FlagSet // where they are registered, for flagError
}

// register registers --control, --config and -o on fs.
func (f *inspectFlags) register(fs *flag.FlagSet) {
	f.registerInstance(fs)
	outputFlag(fs, &f.output)
}

// registerInstance registers --control and --config on fs.
func (f *inspectFlags) registerInstance(fs *flag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.control, "control", "", "control socket `PATH` of the instance (default: from --config, or the only one in "+control.RunDir+")")
	fs.StringVar(&f.config, "config", "", "config `FILE` of the instance; its socket is "+control.RunDir+"/NAME.sock")
}

// client returns a client of the instance the flags name. --control with
// --config is a usage mistake.
func (f *inspectFlags) client() (*control.Client, error) {
	path, err := resolveSocket(control.RunDir, f.control, f.config)
	if errors.Is(err, errBothInstances) {
		return nil, flagError(f.fs, err)
	}
	if err != nil {
		return nil, err
	}
	return control.NewClient(path), nil
}

// errBothInstances is --control given with --config.
var errBothInstances = errors.New("--control and --config both name an instance: give one")

// resolveSocket picks the control socket: --control as given; else the
// socket of the instance named in --config; else the only *.sock in dir.
func resolveSocket(dir, controlPath, configFile string) (string, error) {
	switch {
	case controlPath != "" && configFile != "":
		return "", errBothInstances
	case controlPath != "":
		return controlPath, nil
	case configFile != "":
		name, err := instanceName(configFile)
		if err != nil {
			return "", err
		}
		return filepath.Join(dir, name+".sock"), nil
	}
	socks, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return "", fmt.Errorf("looking for control sockets: %w", err)
	}
	switch len(socks) {
	case 0:
		return "", fmt.Errorf("no uswitch instance is running (no control socket in %s)", dir)
	case 1:
		return socks[0], nil
	}
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = strings.TrimSuffix(filepath.Base(s), ".sock")
	}
	sort.Strings(names)
	return "", fmt.Errorf("%d uswitch instances are running (%s): choose one with --config FILE or --control PATH",
		len(names), strings.Join(names, ", "))
}

// instanceName reads the instance name from a config file.
func instanceName(configFile string) (string, error) {
	plan, err := config.Load(configFile)
	if err != nil {
		return "", err
	}
	return plan.Name, nil
}

// getJSON gets path from the instance into v, within requestTimeout.
func getJSON(ctx context.Context, c *control.Client, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return c.GetJSON(ctx, path, v)
}

func cmdFDB(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return fdb(ctx, args, os.Stdout)
}

// fdb is `uswitch fdb`; a watch runs until ctx ends.
func fdb(ctx context.Context, args []string, w io.Writer) error {
	fs := newFlagSet("fdb", fdbSynopsis)
	var f inspectFlags
	f.register(fs)
	network := fs.String("network", "", "show only network `N`")
	port := fs.String("port", "", "show only the entries on port `P` (like bridge fdb show brport P)")
	mac := fs.String("mac", "", "show only the entries of `MAC`")
	watch := fs.Bool("watch", false, "print entries as they are learned, moved and aged out, until interrupted")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *watch && (*port != "" || *mac != "") {
		return flagError(fs, errors.New("--port and --mac do not apply to --watch"))
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *network != "" {
		q.Set("network", *network)
	}
	if *watch {
		q.Set("watch", "1")
		return watchFDB(ctx, c, "/v1/fdb?"+q.Encode(), w, f.output)
	}
	if *port != "" {
		q.Set("port", *port)
	}
	if *mac != "" {
		q.Set("mac", *mac)
	}
	path := "/v1/fdb"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	return listFDB(ctx, c, path, w, f.output, *network == "")
}

// listTimeout bounds a listing that streams: a million FDB rows take
// seconds, not requestTimeout's moments.
const listTimeout = 5 * time.Minute

// fdbChunk is how many rows `uswitch fdb` lays out at once: a table's
// column widths fit its first chunk (and grow, if they must, for later
// ones), so that a million rows print without being held.
const fdbChunk = 1024

// listFDB prints the FDB entries streamed from path as they arrive, in
// table or JSON format, holding a chunk of them at a time.
func listFDB(ctx context.Context, c *control.Client, path string, w io.Writer, f outputFormat, withNetwork bool) error {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	body, err := c.Stream(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	bw := bufio.NewWriterSize(w, 32<<10)
	var out fdbPrinter = &fdbJSON{w: bw}
	if f != formatJSON {
		out = &fdbRows{w: bw, t: fdbTable(nil, withNetwork), withNetwork: withNetwork}
	}
	dec := json.NewDecoder(body)
	if err := expectDelim(dec, '['); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	for dec.More() {
		var e control.FDBEntry
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if err := out.add(e); err != nil {
			return err
		}
	}
	if err := expectDelim(dec, ']'); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if err := out.end(); err != nil {
		return err
	}
	return bw.Flush()
}

// expectDelim reads the JSON delimiter d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %v, got %v", d, tok)
	}
	return nil
}

// fdbPrinter prints FDB entries one at a time, then ends the output.
type fdbPrinter interface {
	add(control.FDBEntry) error
	end() error
}

// fdbJSON prints entries as writeJSON prints a slice of them.
type fdbJSON struct {
	w    io.Writer
	some bool
}

func (p *fdbJSON) add(e control.FDBEntry) error {
	b, err := json.MarshalIndent(e, "  ", "  ")
	if err != nil {
		return err
	}
	sep := ",\n  "
	if !p.some {
		sep, p.some = "[\n  ", true
	}
	if _, err := io.WriteString(p.w, sep); err != nil {
		return err
	}
	_, err = p.w.Write(b)
	return err
}

func (p *fdbJSON) end() error {
	end := "\n]\n"
	if !p.some {
		end = "[]\n"
	}
	_, err := io.WriteString(p.w, end)
	return err
}

// fdbRows prints entries as fdbTable lays them out, a chunk at a time.
type fdbRows struct {
	w           io.Writer
	t           *table
	withNetwork bool
	width       []int // nil until the first chunk is printed
}

func (p *fdbRows) add(e control.FDBEntry) error {
	p.t.add(fdbRow(e, p.withNetwork)...)
	if len(p.t.rows) < fdbChunk {
		return nil
	}
	return p.flush()
}

func (p *fdbRows) flush() error {
	header := p.width == nil
	p.width = p.t.widths(p.width)
	err := p.t.writeLines(p.w, p.width, header)
	p.t.rows = p.t.rows[:0]
	return err
}

func (p *fdbRows) end() error {
	if p.width != nil && len(p.t.rows) == 0 {
		return nil
	}
	return p.flush()
}

// fdbTable lays out FDB entries like `bridge fdb show`, in columns. The
// NETWORK column is there when the entries span every network.
func fdbTable(entries []control.FDBEntry, withNetwork bool) *table {
	header := []string{"MAC", "VLAN>", "PORT", "NETWORK", "FLAGS", "AGE>"}
	if !withNetwork {
		header = slices.Delete(header, 3, 4)
	}
	t := newTable(header...)
	for _, e := range entries {
		t.add(fdbRow(e, withNetwork)...)
	}
	return t
}

// fdbRow is one entry's cells in fdbTable.
func fdbRow(e control.FDBEntry, withNetwork bool) []string {
	vlan, flags, age := "-", "learned", fmt.Sprintf("%.1fs", time.Duration(e.Age).Seconds())
	if e.VLAN != 0 {
		vlan = strconv.Itoa(int(e.VLAN))
	}
	if e.Static {
		flags, age = "static", "-"
	}
	row := []string{e.MAC.String(), vlan, e.Port, e.Network, flags, age}
	if !withNetwork {
		row = slices.Delete(row, 3, 4)
	}
	return row
}

// watchFDB prints the FDB events streamed from path until ctx ends (not an
// error) or the instance closes the stream (an error).
func watchFDB(ctx context.Context, c *control.Client, path string, w io.Writer, f outputFormat) error {
	body, err := c.Stream(ctx, path)
	if err != nil {
		return err
	}
	defer body.Close()
	return printFDBEvents(ctx, body, w, f)
}

// printFDBEvents prints the newline-delimited JSON events read from r, one
// line each; in JSON format they are copied as received. It returns nil
// when ctx ended the stream and an error when the stream ended by itself.
func printFDBEvents(ctx context.Context, r io.Reader, w io.Writer, f outputFormat) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		if f == formatJSON {
			if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
				return err
			}
			continue
		}
		var e vswitch.Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("watch: bad event %q: %w", line, err)
		}
		if _, err := fmt.Fprintln(w, fdbEventLine(e)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	return errors.New("watch: the instance closed the stream (it is shutting down)")
}

// fdbEventLine is one event as `bridge monitor fdb` would print it, e.g.
// "learned 02:42:ac:14:00:0a dev web network front" or
// "moved 02:42:ac:14:00:0a dev api network front (was web)".
func fdbEventLine(e vswitch.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", e.Type, e.MAC)
	if e.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d", e.VLAN)
	}
	fmt.Fprintf(&b, " dev %s network %s", e.Port, e.Network)
	if e.From != "" {
		fmt.Fprintf(&b, " (was %s)", e.From)
	}
	return b.String()
}

func cmdPorts(args []string) error { return ports(context.Background(), args, os.Stdout) }

// ports is `uswitch ports`.
func ports(ctx context.Context, args []string, w io.Writer) error {
	var list []datapath.PortInfo
	return inspect(ctx, "ports", "/v1/ports", args, w, &list, func() *table { return portsTable(list) })
}

// inspect is the whole of a simple inspection command: the common flags,
// one GET of path into v, and v rendered as tbl's table or as JSON.
func inspect(ctx context.Context, name, path string, args []string, w io.Writer, v any, tbl func() *table) error {
	fs := newFlagSet(name, inspectSynopsis)
	var f inspectFlags
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	if err := getJSON(ctx, c, path, v); err != nil {
		return err
	}
	return render(w, f.output, v, tbl)
}

// portsTable lays out port counters, one port a row.
func portsTable(ports []datapath.PortInfo) *table {
	t := newTable("PORT", "NETWORK", "RX-PKTS>", "RX-BYTES>", "TX-PKTS>", "TX-BYTES>", "DROPS")
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	for _, p := range ports {
		t.add(p.Name, p.Network, u(p.RxPackets), u(p.RxBytes), u(p.TxPackets), u(p.TxBytes), dropsCell(p.Drops))
	}
	return t
}

// dropsCell is "reason=N,reason=N" sorted by reason, or "-".
func dropsCell(drops map[string]uint64) string {
	if len(drops) == 0 {
		return "-"
	}
	reasons := make([]string, 0, len(drops))
	for r := range drops {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for i, r := range reasons {
		reasons[i] = fmt.Sprintf("%s=%d", r, drops[r])
	}
	return strings.Join(reasons, ",")
}
