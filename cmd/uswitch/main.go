// Command uswitch builds Docker-style container networks out of Linux
// network namespaces and switches, routes and NATs their traffic in
// userspace. `uswitch run` runs an instance; the inspection commands
// (fdb, ports, conntrack, ...) are thin clients of its control API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// command is one subcommand. Adding a command is one line in commands.
type command struct {
	name    string
	args    string // synopsis of its flags, for the usage text
	summary string
	run     func(args []string) error
}

var commands = []command{
	{"run", runSynopsis, "create the networks and run the datapath until interrupted", cmdRun},
	{"check", checkSynopsis, "validate a config and print the resolved plan", cmdCheck},
	{"down", downSynopsis, "remove what a crashed run left behind", cmdDown},
	{"endpoint", "add " + endpointAddSynopsis + " | rm " + removeSynopsis + " | ls " + inspectSynopsis, "add or remove an endpoint of the running instance, or list them", cmdEndpoint},
	{"network", "add " + networkAddSynopsis + " | rm " + removeSynopsis + " | ls " + inspectSynopsis, "add or remove a network of the running instance, or list them", cmdNetwork},
	{"apply", applySynopsis, "change the running instance to match a config; print what changed", cmdApply},
	{"fdb", fdbSynopsis, "show the MAC learning table, or watch it change", cmdFDB},
	{"ports", inspectSynopsis, "show every port's packet, byte and drop counters", cmdPorts},
	{"neigh", inspectSynopsis, "show the router's ARP and IPv6 neighbour caches per network", cmdNeigh},
	{"routes", inspectSynopsis, "show the routing table", cmdRoutes},
	{"conntrack", conntrackSynopsis, "show the connection table, like conntrack -L", cmdConntrack},
	{"rules", rulesSynopsis, "show the compiled rules per hook with their counters", cmdRules},
	{"trace", traceSynopsis, "run a packet through the datapath's own code without side effects and show every step", cmdTrace},
	{"top", topSynopsis, "per-port rates and drops, FDB and conntrack sizes, refreshed every second", cmdTop},
	{"ui", uiSynopsis, "serve a web page of the running instance: topology, live rates, MAC tables, the tracer", cmdUI},
	{"capture", captureSynopsis, "write the switched frames as pcap, for tcpdump -r or Wireshark", cmdCapture},
	{"version", "", "print the version and build information", cmdVersion},
}

// The synopses of the commands' flags: the one text that both the overview
// (uswitch help) and each command's -h print.
const (
	runSynopsis         = "[--config FILE] [--control PATH] [--busy-poll=true|false] [--poll-threads N] [--io-uring] [--cpu-latency] [--veth-ring=true|false] [--veth-qdisc-bypass] [--log-level debug|info|warn|error] [--log-format text|json] [--cpuprofile FILE]"
	checkSynopsis       = "[--config FILE] [-o table|json]"
	downSynopsis        = "[--config FILE]"
	instanceSynopsis    = "[--control PATH | --config FILE]"
	inspectSynopsis     = "[-o table|json] " + instanceSynopsis
	endpointAddSynopsis = "NAME --network N [--ip IP] [--ip6 IP6] [--mac MAC] [--link tap|veth] [--alias A]... [--publish SPEC]... " + inspectSynopsis
	networkAddSynopsis  = "NAME --subnet S [--gateway G] [--subnet6 S6] [--gateway6 G6] [--isolate=false] [--internal] [--masquerade=false] [--masquerade6=true|false] [--dns=false] [--mtu N] " + inspectSynopsis
	removeSynopsis      = "NAME " + instanceSynopsis
	applySynopsis       = "--config FILE [--control PATH] [-o table|json]"
	fdbSynopsis         = "[--network N] [--port P] [--mac MAC] [--watch] " + inspectSynopsis
	conntrackSynopsis   = "[--family ipv4|ipv6] [--proto tcp|udp|icmp|icmpv6] [--src IP] [--dst IP] [--sport N] [--dport N] [--state S] " + inspectSynopsis
	rulesSynopsis       = "[-x] " + inspectSynopsis
	captureSynopsis     = "[--port P] [--network N] [-c COUNT] -w FILE|- " + instanceSynopsis
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the command named by args[0] and returns the exit code: 0
// on success, 1 on an error (printed as "uswitch: <err>"), 2 on a usage
// error.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) == 0 {
			usage(stdout)
			return 0
		}
		// `uswitch help fdb` is `uswitch fdb -h`.
		name, args = args[0], []string{"-h"}
	}
	for _, c := range commands {
		if c.name == name {
			return exitCode(c.run(args), stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "uswitch: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

// exitCode reports err and turns it into an exit code: asked-for help is
// printed to stdout (0), a usage mistake's message and usage to stderr (2),
// any other error as "uswitch: <err>" to stderr (1).
func exitCode(err error, stdout, stderr io.Writer) int {
	var he helpError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he):
		fmt.Fprint(stdout, he.text)
		return 0
	case errors.As(err, &ue):
		fmt.Fprint(stderr, ue.text)
		return 2
	default:
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
}

// helpWidth is the widest line of the overview (uswitch help).
const helpWidth = 100

// usage prints the overview: each form of each command (the synopsis's
// alternatives, split at a top-level " | ") wrapped at helpWidth, with the
// command's summary indented under them.
func usage(w io.Writer) {
	fmt.Fprint(w, "usage: uswitch <command> [flags]\n\ncommands:\n")
	for _, c := range commands {
		for _, form := range synopsisForms(c.args) {
			fmt.Fprint(w, wrapWords("  "+c.name, form, helpWidth))
		}
		fmt.Fprintf(w, "        %s\n", c.summary)
	}
	fmt.Fprint(w, "  help [COMMAND]\n        show this text, or a command's flags\n")
	fmt.Fprint(w, `
Inspection commands find the running instance by --control PATH, or by
--config FILE (socket /run/uswitch/NAME.sock); with neither, they use the
only socket in /run/uswitch. Run 'uswitch help COMMAND' for a command's flags.
`)
}

// wrapWords lays out head and words on lines no wider than width where it
// can (a word wider than that stays whole), indenting the continuation
// lines under the first word after head.
func wrapWords(head string, words []string, width int) string {
	var b strings.Builder
	indent := strings.Repeat(" ", len(head)+1)
	line, n := head, 0
	for _, word := range words {
		if n > 0 && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line, n = indent+word, 1
			continue
		}
		line += " " + word
		n++
	}
	b.WriteString(line + "\n")
	return b.String()
}

// synopsisForms splits a synopsis into its words, at the spaces outside
// brackets, and into its alternative forms at the top-level "|" words.
func synopsisForms(s string) [][]string {
	forms := [][]string{nil}
	depth, start := 0, 0
	word := func(end int) {
		switch w := s[start:end]; w {
		case "":
		case "|":
			forms = append(forms, nil)
		default:
			forms[len(forms)-1] = append(forms[len(forms)-1], w)
		}
		start = end + 1
	}
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ' ':
			if depth == 0 {
				word(i)
			}
		}
	}
	word(len(s))
	return forms
}

// usageError is a command-line mistake: an unknown or stray argument, a
// bad flag value, a missing or conflicting flag. text is what the flag set
// printed (the message and the command's usage); dispatch prints it to
// stderr and exits 2.
type usageError struct {
	err  error
	text string
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// helpError is asked-for help (-h, uswitch help COMMAND): dispatch prints
// text, the command's usage, to stdout and exits 0.
type helpError struct{ text string }

func (helpError) Error() string { return flag.ErrHelp.Error() }
func (helpError) Unwrap() error { return flag.ErrHelp }

// newFlagSet returns a flag set for `uswitch name` whose -h prints synopsis
// and the flags.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("uswitch "+name, flag.ContinueOnError)
	fs.Usage = func() {
		for i, form := range synopsisForms(synopsis) {
			head := "usage: uswitch " + name
			if i > 0 {
				head = "       uswitch " + name
			}
			fmt.Fprint(fs.Output(), wrapWords(head, form, helpWidth))
		}
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return flagError(fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return nil
}

// parseArgs parses args into fs. What the flag set prints comes back in
// the error: a helpError for -h, a usageError for a mistake.
func parseArgs(fs *flag.FlagSet, args []string) error {
	var buf strings.Builder
	fs.SetOutput(&buf)
	defer fs.SetOutput(nil)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return helpError{buf.String()}
	case err != nil:
		return usageError{err, buf.String()}
	}
	return nil
}

// flagError is a command-line mistake found after parsing (a missing,
// conflicting or out-of-range flag, a stray argument), reported like the
// flag set reports its own: the message, then the command's usage, exit 2.
// Every such check goes through it, before the command prints anything.
func flagError(fs *flag.FlagSet, err error) error {
	var buf strings.Builder
	fs.SetOutput(&buf)
	defer fs.SetOutput(nil)
	fmt.Fprintf(&buf, "%s: %v\n", fs.Name(), err)
	fs.Usage()
	return usageError{err, buf.String()}
}
