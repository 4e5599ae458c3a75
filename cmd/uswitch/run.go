package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/uswitch-dev/uswitch/clock"
	"github.com/uswitch-dev/uswitch/config"
	"github.com/uswitch-dev/uswitch/control"
	"github.com/uswitch-dev/uswitch/datapath"
	"github.com/uswitch-dev/uswitch/live"
	"github.com/uswitch-dev/uswitch/topo"
)

// stateDir is where run keeps its state file, lock and control socket.
const stateDir = "/run/uswitch"

// loadPlan reads --config, or the embedded default topology when path is
// empty (printing it when printDefault is set, so a newcomer sees it).
func loadPlan(path string, printDefault io.Writer) (*config.Plan, error) {
	if path != "" {
		return config.Load(path)
	}
	plan, raw := config.Default()
	if printDefault != nil {
		fmt.Fprintf(printDefault, "no --config given: running the embedded default topology\n\n%s\n", raw)
	}
	return plan, nil
}

// cmdCheck validates a config and prints the resolved plan.
func cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfg := fs.String("config", "", "the net.toml to check (default: the embedded default topology)")
	out := fs.String("o", "table", "output format: table|json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan, err := loadPlan(*cfg, nil)
	if err != nil {
		return err
	}
	if *out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(plan)
	}
	if err := plan.Write(os.Stdout); err != nil {
		return err
	}
	return writeCompiledRules(os.Stdout, plan)
}

// cmdDown removes what a crashed run of the config's instance left behind.
func cmdDown(args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	cfg := fs.String("config", "", "the net.toml of the instance (default: the embedded default topology)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan, err := loadPlan(*cfg, nil)
	if err != nil {
		return err
	}
	if err := needRoot("down"); err != nil {
		return err
	}
	unlock, err := topo.Lock(plan.Name, topo.Options{StateDir: stateDir})
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	defer unlock()
	if err := topo.Down(plan.Name, topo.Options{StateDir: stateDir}); err != nil {
		return err
	}
	// Holding the lock, no instance of this name runs: a socket left by a
	// killed run is stale.
	if err := os.Remove(control.SocketPath(plan.Name)); err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("down: %w", err)
	}
	return nil
}

// cmdRun builds the plan's topology, forwards until SIGINT/SIGTERM, then
// removes everything it made.
func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfg := fs.String("config", "", "the net.toml to run (default: the embedded default topology)")
	sock := fs.String("control", "", "control socket path (default /run/uswitch/<name>.sock)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	busyPoll := fs.Bool("busy-poll", true, "serve TAP (offload = true) and veth ports from one thread that busy-polls them at SCHED_IDLE priority while frames flow (a CPU kept awake then; idle it sleeps); --busy-poll=false: a reader goroutine per port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	plan, err := loadPlan(*cfg, os.Stdout)
	if err != nil {
		return err
	}
	if err := needRoot("run"); err != nil {
		return err
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return fmt.Errorf("run: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("run: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("run: TAP devices need /dev/net/tun (modprobe tun): %w", err)
	}
	if *sock == "" {
		*sock = control.SocketPath(plan.Name)
	}
	// Signals are caught from here on, so an interrupt during start-up still
	// removes whatever was made so far.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A reader of our output that goes away (`uswitch run | head`, a test
	// that died) must not kill us with SIGPIPE before we clean up.
	signal.Ignore(syscall.SIGPIPE)
	if *busyPoll {
		// The busy-poll thread keeps a P while it spins; the rest of the
		// process keeps as many as before.
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	return run(ctx, plan, *sock, *busyPoll, log)
}

func run(ctx context.Context, plan *config.Plan, sock string, busyPoll bool, log *slog.Logger) (err error) {
	opt := topo.Options{StateDir: stateDir, Polled: busyPoll}
	unlock, err := topo.Lock(plan.Name, opt)
	if err != nil {
		return err
	}
	defer unlock()

	lis, err := control.Listen(sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	defer lis.Close()

	t0 := time.Now()
	tp, err := topo.Apply(ctx, plan, opt)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := tp.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		}
		log.Info("removed everything this run made", "instance", plan.Name)
	}()

	clk := clock.NewCoarse(10 * time.Millisecond)
	defer clk.Stop()
	dp, err := datapath.NewWithOptions(plan, clk, log, datapath.Options{BusyPoll: busyPoll})
	if err != nil {
		return err
	}
	defer dp.Close()
	if tp.Uplink != nil {
		if err := dp.AttachUplink(tp.Uplink); err != nil {
			return err
		}
	}
	for _, p := range tp.Ports {
		if err := dp.AttachEndpoint(p.Port, p.Dev); err != nil {
			return err
		}
	}
	dp.Start(250 * time.Millisecond)

	inst := live.New(ctx, plan, tp, dp, log) // endpoints and networks change through it
	defer inst.Close()
	if err := inst.StartProxies(); err != nil {
		return err
	}

	served := make(chan error, 1)
	go func() { served <- control.Serve(ctx, lis, control.NewHandlerWith(dp, inst)) }()

	if err := ctx.Err(); err != nil {
		return nil // interrupted during start-up; the defers clean up
	}
	writeSummary(os.Stdout, plan)
	log.Info("ready", "instance", plan.Name, "control", sock, "took", time.Since(t0).Round(time.Millisecond))

	select {
	case <-ctx.Done():
		log.Info("stopping", "instance", plan.Name)
	case err := <-served:
		if err != nil {
			return fmt.Errorf("control API: %w", err)
		}
	}
	return nil
}

// writeSummary prints the endpoint table that run shows once ready.
func writeSummary(w io.Writer, plan *config.Plan) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tMODE\tNETNS\tINTERFACE\tPORT\tNETWORK\tIP\tMAC\tPUBLISH")
	for _, ep := range plan.Endpoints {
		mode := ep.Mode
		if ep.Mode == config.ModeContainer {
			mode += ":" + ep.Container
		}
		netns := ep.Netns
		if netns == "" {
			netns = "-"
		}
		var pub []string
		for _, p := range ep.Publish {
			pub = append(pub, p.String())
		}
		publish := strings.Join(pub, ",")
		if publish == "" {
			publish = "-"
		}
		if len(ep.Interfaces) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t%s\n", ep.Name, mode, netns, publish)
			continue
		}
		for i, ifc := range ep.Interfaces {
			if i > 0 {
				publish = ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ep.Name, mode, netns, ifc.Name, ifc.Port, ifc.Network, ifc.Prefix, ifc.MAC, publish)
		}
	}
	tw.Flush()
}

func needRoot(cmd string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s: creating namespaces and TAP devices needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); try sudo", cmd)
	}
	return nil
}
