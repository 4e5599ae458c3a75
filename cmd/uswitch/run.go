package main

import (
	"context"
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

func cmdCheck(args []string) error { return check(args, os.Stdout) }

// check is `uswitch check`: it validates a config and prints the resolved
// plan to w.
func check(args []string, w io.Writer) error {
	fs := newFlagSet("check", checkSynopsis)
	cfg := fs.String("config", "", "the net.toml to check (default: the embedded default topology)")
	var out outputFormat
	outputFlag(fs, &out)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	plan, err := loadPlan(*cfg, nil)
	if err != nil {
		return err
	}
	if out == formatJSON {
		return writeJSON(w, plan)
	}
	if err := plan.Write(w); err != nil {
		return err
	}
	return writeCompiledRules(w, plan)
}

// cmdDown removes what a crashed run of the config's instance left behind.
func cmdDown(args []string) error {
	fs := newFlagSet("down", downSynopsis)
	cfg := fs.String("config", "", "the net.toml of the instance (default: the embedded default topology)")
	if err := parseFlags(fs, args); err != nil {
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
	fs := newFlagSet("run", runSynopsis)
	cfg := fs.String("config", "", "the net.toml to run (default: the embedded default topology)")
	sock := fs.String("control", "", "control socket path (default /run/uswitch/<name>.sock)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	busyPoll := fs.Bool("busy-poll", true, "serve TAP (offload = true) and veth ports from one thread that busy-polls them at SCHED_IDLE priority while frames flow (a CPU kept awake then; idle it sleeps); --busy-poll=false: a reader goroutine per port. Given, it overrides [defaults] busy_poll")
	pollThreads := fs.Int("poll-threads", 1, "busy-poll threads: each reads its queue of every TAP with vnet headers (multi-queue TAPs, a flow kept on one thread), veths are read by the first; 0: one per CPU this process may run on, at most 4")
	ioUring := fs.Bool("io-uring", false, "busy-poll threads read TAPs through an io_uring each (multishot reads, one io_uring_enter per turn for every waiting frame) instead of a readv per frame; needs Linux 6.7, else they read with epoll")
	cpuLatency := fs.Bool("cpu-latency", false, "while the busy-poll thread spins, hold a CPU latency request of 0 (/dev/cpu_dma_latency): idle CPUs of the whole machine poll instead of sleeping. Given, it overrides [defaults] cpu_latency")
	vethRing := fs.Bool("veth-ring", true, "read veth ports through a receive ring shared with the kernel (PACKET_RX_RING, 512 KiB a port) instead of one recvmsg per frame")
	vethBypass := fs.Bool("veth-qdisc-bypass", false, "send to veth ports past their queueing discipline (PACKET_QDISC_BYPASS)")
	level := slog.LevelInfo
	fs.Func("log-level", "log `level`: debug, info, warn or error (default info)", func(s string) error {
		l, ok := logLevels[s]
		if !ok {
			return fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
		}
		level = l
		return nil
	})
	format := "text"
	fs.Func("log-format", "log `format`: text (key=value, the default) or json (one object a line)", func(s string) error {
		if s != "text" && s != "json" {
			return fmt.Errorf("unknown log format %q (want text or json)", s)
		}
		format = s
		return nil
	})
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pollThreads < 0 {
		return flagError(fs, fmt.Errorf("--poll-threads %d: want 0 (one per CPU) or more", *pollThreads))
	}
	log := newLogger(os.Stderr, format, level)
	plan, err := loadPlan(*cfg, os.Stdout)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "busy-poll":
			plan.Defaults.BusyPoll = *busyPoll
		case "cpu-latency":
			plan.Defaults.CPULatency = *cpuLatency
		}
	})
	if err := needRoot("run"); err != nil {
		return err
	}
	notify, err := newNotifier()
	if err != nil {
		return fmt.Errorf("run: %w", err)
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
	// SIGHUP applies --config again once ready; before, it must not kill.
	signal.Ignore(syscall.SIGHUP)
	threads := 0
	if plan.Defaults.BusyPoll {
		// Each busy-poll thread keeps a P while it spins; the rest of the
		// process keeps as many as before.
		threads = datapath.PollThreads(*pollThreads)
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + threads)
	}
	veth := topo.Options{VethRing: *vethRing, VethQdiscBypass: *vethBypass}
	return run(ctx, plan, *cfg, *sock, threads, *ioUring, veth, notify, log)
}

// logLevels are the values of run's --log-level.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

// newLogger returns run's logger: key=value lines (format "text") or JSON
// objects ("json") on w, from level up.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	opt := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opt))
	}
	return slog.New(slog.NewTextHandler(w, opt))
}

// run runs plan until ctx is done: busy polling and the CPU latency request
// as plan.Defaults says, the control API on sock, and the service manager
// told READY=1 once it forwards and STOPPING=1 when it starts to tear down.
// SIGHUP applies the file at cfg again (`uswitch apply`).
//
// veth's VethRing and VethQdiscBypass say how veth ports are opened.
func run(ctx context.Context, plan *config.Plan, cfg, sock string, pollThreads int, ioUring bool, veth topo.Options, notify *notifier, log *slog.Logger) (err error) {
	opt := topo.Options{StateDir: stateDir, Polled: plan.Defaults.BusyPoll, Queues: pollThreads, VethRing: veth.VethRing, VethQdiscBypass: veth.VethQdiscBypass}
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
	plan = tp.Plan() // with what a previous run added that is re-attached
	defer func() {
		if cerr := tp.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
		}
		log.Info("removed everything this run made", "instance", plan.Name)
	}()
	stopWatch, err := tp.WatchUplink(log) // host routes back after an uplink down/up
	if err != nil {
		return err
	}
	defer stopWatch()

	clk := clock.NewCoarse(10 * time.Millisecond)
	defer clk.Stop()
	dp, err := datapath.NewWithOptions(plan, clk, log, datapath.Options{BusyPoll: plan.Defaults.BusyPoll, CPULatency: plan.Defaults.CPULatency, PollThreads: pollThreads, IOUring: ioUring})
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
	stopNetnsWatch, err := tp.WatchNetns(log, inst.NetnsGone) // a namespace deleted from outside lets go of its ports
	if err != nil {
		return err
	}
	defer stopNetnsWatch()
	if err := inst.StartProxies(); err != nil {
		return err
	}

	served := make(chan error, 1)
	go func() { served <- control.Serve(ctx, lis, control.NewHandlerWith(dp, inst)) }()
	// SIGHUP is caught before ready is said, so a reload asked for right
	// after it is not lost to the signal's ignored disposition.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, inst, cfg, log)

	if err := ctx.Err(); err != nil {
		return nil // interrupted during start-up; the defers clean up
	}
	writeSummary(os.Stdout, plan)
	took := time.Since(t0).Round(time.Millisecond)
	log.Info("ready", "instance", plan.Name, "control", sock, "took", took,
		"busy_poll", plan.Defaults.BusyPoll, "cpu_latency", plan.Defaults.CPULatency, "poll_threads", pollThreads)
	if err := notify.notify("READY=1", fmt.Sprintf("STATUS=forwarding: instance %s, %d networks, %d endpoints, control %s",
		plan.Name, len(plan.Networks), len(plan.Endpoints), sock)); err != nil {
		log.Warn("cannot tell the service manager", "err", err)
	}

	select {
	case <-ctx.Done():
	case err = <-served:
		if err != nil {
			err = fmt.Errorf("control API: %w", err)
		}
	}
	log.Info("stopping", "instance", plan.Name)
	if nerr := notify.notify("STOPPING=1", "STATUS=removing what this run made"); nerr != nil {
		log.Warn("cannot tell the service manager", "err", nerr)
	}
	return err
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
			ip := ifc.Prefix.String()
			if ifc.Prefix6.IsValid() {
				ip += "," + ifc.Prefix6.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ep.Name, mode, netns, ifc.Name, ifc.Port, ifc.Network, ip, ifc.MAC, publish)
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
