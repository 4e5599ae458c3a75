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
	"text/tabwriter"
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
	{"run", "[--config FILE] [--busy-poll=false] [--cpu-latency] [--veth-ring=false] [--log-level L]", "create the networks and run the datapath until interrupted", cmdRun},
	{"check", "[--config FILE] [-o json]", "validate a config and print the resolved plan", cmdCheck},
	{"down", "[--config FILE]", "remove what a crashed run left behind", cmdDown},
	{"endpoint", "add NAME --network N [--ip IP] [--ip6 IP6] [--mac MAC] [--link tap|veth] [--alias A]... [--publish SPEC]... | rm NAME | ls", "add or remove an endpoint of the running instance, or list them", cmdEndpoint},
	{"network", "add NAME --subnet S [--gateway G] [--subnet6 S6] [--gateway6 G6] [--isolate=false] [--internal] [--mtu N] | rm NAME | ls", "add or remove a network of the running instance, or list them", cmdNetwork},
	{"apply", "--config FILE [-o json]", "change the running instance to match a config; print what changed", cmdApply},
	{"fdb", "[--network N] [--port P] [--mac MAC] [--watch] [-o json]", "show the MAC learning table, or watch it change", cmdFDB},
	{"ports", "[-o json]", "show every port's packet, byte and drop counters", cmdPorts},
	{"neigh", "[-o json]", "show the router's ARP and IPv6 neighbour caches per network", cmdNeigh},
	{"routes", "[-o json]", "show the routing table", cmdRoutes},
	{"conntrack", "[--proto P] [--src IP] [--dst IP] [--sport N] [--dport N] [--state S] [-o json]", "show the connection table, like conntrack -L", cmdConntrack},
	{"rules", "[-x] [-o json]", "show the compiled rules per hook with their counters", cmdRules},
	{"trace", traceSynopsis, "run a packet through the datapath's own code without side effects and show every step", cmdTrace},
	{"top", topSynopsis, "per-port rates and drops, FDB and conntrack sizes, refreshed every second", cmdTop},
	{"ui", uiSynopsis, "serve a web page of the running instance: topology, live rates, MAC tables, the tracer", cmdUI},
	{"capture", "[--port P] [--network N] [-c COUNT] -w FILE|-", "write the switched frames as pcap, for tcpdump -r or Wireshark", cmdCapture},
	{"version", "", "print the version and build information", cmdVersion},
}

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
			return exitCode(c.run(args), stderr)
		}
	}
	fmt.Fprintf(stderr, "uswitch: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

// exitCode reports err and turns it into an exit code.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2 // the flag set has printed the message and its usage
	default:
		fmt.Fprintf(stderr, "uswitch: %v\n", err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, "usage: uswitch <command> [flags]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(tw, "  help [COMMAND]\t%s\n", "show this text, or a command's flags")
	tw.Flush()
	fmt.Fprint(w, `
Inspection commands find the running instance by --control PATH, or by
--config FILE (socket /run/uswitch/NAME.sock); with neither, they use the
only socket in /run/uswitch. Run 'uswitch help COMMAND' for a command's flags.
`)
}

// usageError is a command-line mistake whose message and usage the flag set
// has already printed; it exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// newFlagSet returns a flag set for `uswitch name` whose -h prints synopsis
// and the flags.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("uswitch "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimSpace("usage: uswitch "+name+" "+synopsis))
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return usageError{err}
	}
	return nil
}
