package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/internal/affinity"
	"github.com/xlbproject/xlb/pipeline"
)

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "xlbd run -config FILE [-var name=value]... [-workers N] [-node NAME] [-status FILE] [-admin-socket PATH] [-admin-group NAME] [-admin-listen HOST:PORT [-admin-tls-cert F -admin-tls-key F -admin-tls-client-ca F]] [-metrics-addr ADDR] [-log-format text|json] [-log-level LEVEL]", stderr)
	config := fs.String("config", "", "the pipeline file (required)")
	vars := varsFlag(fs)
	workers := fs.Int("workers", 0, "override the file's pipeline.workers")
	quiet := fs.Bool("quiet", false, "do not print counters when the pipeline stops")
	pin := fs.Bool("pin", true, "pin worker i to the i-th CPU this process may use (or of -worker-cpus)")
	workerCPUs := fs.String("worker-cpus", "", "the workers' CPUs in order, such as 1 or 2,3 (default: the first CPUs this process may use)")
	isolate := fs.Bool("isolate-workers", false, "keep the process's other threads (the Go runtime's, the control plane's) on the CPUs of its mask no worker uses, when there are some; they must not be busy with anything else: a worker waits for them at times (docs/benchmarks.md)")
	pluginDir := pluginDirFlag(fs)
	hostname, _ := os.Hostname()
	node := fs.String("node", hostname, "this node's name in the cluster: unique among the nodes that share a config source")
	statusFile := fs.String("status", "", "write the configuration's status as JSON to this file on every change (atomically)")
	adminOpts := adminFlags(fs)
	logs := addLogFlags(fs)
	metricsAddr := metricsAddrFlag(fs)
	if !parse(fs, args, func() bool { return *config != "" && fs.NArg() == 0 }) {
		return 2
	}
	log, err := logs.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd run: %v\n", err)
		return 2
	}
	// Signals from now on: SIGHUP waits for the apply loop, and SIGINT or
	// SIGTERM end the wait for the config sources cleanly.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	s, err := newServices(*pluginDir, true, log)
	if err != nil {
		log.Error("cannot run plugins", "err", err)
		return 1
	}
	defer s.stop()
	d := newDaemon(s, log, *config, vars, stderr, *node, *statusFile)
	m := startMetrics(*metricsAddr, log, s, d)
	defer m.stop()
	startCtx, stopStart := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = s.startSources(startCtx, *config, vars, stderr)
	aborted := startCtx.Err() != nil
	stopStart()
	if aborted {
		log.Info("stopped while waiting for the config sources", "err", err)
		return 0
	}
	if err != nil {
		log.Error("configuration rejected", "config", *config, "err", err)
		return 1
	}
	f, err := d.attempt(true)
	if err != nil {
		log.Error("configuration rejected", "config", *config, "err", err)
		return 1
	}
	if err := f.Graph.Preflight(); err != nil {
		// Each problem on its own line, with its fix: the log line alone
		// would fold them into one quoted string.
		fmt.Fprintf(stderr, "xlbd run: this host cannot run %s:\n", *config)
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "  - %s\n", line)
		}
		log.Error("not started: the host lacks what the pipeline needs, printed above", "config", *config)
		return 1
	}
	s.running, s.pre = f, newPrecheck()
	if main, err := os.ReadFile(*config); err == nil {
		// Evaluated here already: the first change costs only itself.
		s.pre.evaluated(main, s.tried)
	}
	s.start()
	n := f.Workers
	if *workers > 0 {
		n = *workers
	}
	if n == 0 {
		if n, err = f.Graph.SuggestedWorkers(); err != nil {
			log.Error("cannot choose the number of workers; set pipeline.workers", "err", err)
			return 1
		}
	}
	opts := pipeline.Options{Workers: n, Logger: log, Values: snapshot.WithStore(nil, s.ctl.Store())}
	if *pin {
		if opts.Pin, err = placeThreads(n, *workerCPUs, *isolate, log); err != nil {
			log.Error("cannot pin workers; run with -pin=false", "err", err)
			return 1
		}
	}
	rt, err := f.Graph.Start(opts)
	if err != nil {
		log.Error("pipeline failed to start", "err", err)
		return 1
	}
	m.rt.Store(rt)

	ctx, stopReloads := context.WithCancel(context.Background())
	defer stopReloads()
	reloads := make(chan struct{})
	go func() {
		defer close(reloads)
		d.loop(ctx, hup)
	}()
	stopAdmin, err := startAdmin(d, rt, adminOpts)
	if err != nil {
		log.Error("cannot serve the admin API", "err", err)
		stopReloads()
		<-reloads
		_ = rt.Close()
		return 1
	}
	defer stopAdmin()

	log.Info("pipeline running", "config", *config, "workers", len(rt.Workers()), "vips", len(s.ctl.Snapshot().VIPs))
	// Ready only now: the program is attached and every socket bound
	// (Start), so that systemd orders what depends on xlbd after that.
	if err := notify(fmt.Sprintf("READY=1\nSTATUS=forwarding with %d workers\nMAINPID=%d", len(rt.Workers()), os.Getpid())); err != nil {
		log.Warn("cannot tell systemd that xlbd is ready", "err", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	ran := make(chan error, 1)
	go func() { ran <- rt.Run(runCtx) }()
	// Routes only now: the tables are built and the XDP program is
	// attached (Start), and the route loop announces nothing until the
	// workers run and the self-check passes.
	routeCtx, stopRoutes := context.WithCancel(context.Background())
	routesDone := make(chan struct{})
	if s.an != nil {
		s.an.Start()
		go func() {
			defer close(routesDone)
			routeLoop(routeCtx, log, rt, s.ctl.Store(), s.an, d.clusterCheck)
		}()
	} else {
		close(routesDone)
	}

	var runErr error
	select {
	case runErr = <-ran:
		// The data plane stopped by itself: nothing forwards any more.
		ran <- runErr
	case sig := <-sigs:
		log.Info("stopping: withdrawing every route first", "signal", sig.String())
	}
	if err := notify("STOPPING=1\nSTATUS=withdrawing routes, then draining"); err != nil {
		log.Warn("cannot tell systemd that xlbd is stopping", "err", err)
	}
	stopRoutes()
	<-routesDone
	if s.an != nil {
		wctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
		if err := s.an.WithdrawAll(wctx); err != nil {
			log.Error("withdrawing the routes failed; stopping anyway", "err", err)
		} else {
			log.Info("every route withdrawn")
		}
		cancel()
	}
	drain(log, s.drain, sigs, ran)
	stopRun()
	runErr = <-ran
	// No reload may be half done when the plugins stop.
	stopAdmin()
	stopReloads()
	<-reloads
	// No scrape may read the elements while they are cleaned up.
	m.stop()
	closeErr := rt.Close()
	log.Info("data plane stopped")
	if !*quiet {
		printStats(stdout, rt.Stats(), s.ctl.Snapshot())
		s.print(stdout)
		st := d.Status()
		printCluster(stdout, &st)
	}
	if err := errors.Join(runErr, closeErr); err != nil {
		log.Error("pipeline stopped with an error", "err", err)
		return 1
	}
	return 0
}

// drain keeps the data plane forwarding for d after the routes were
// withdrawn, so that the flows routers still send here while they move
// them elsewhere keep their backend; a second signal, or the data plane
// stopping by itself (on ran, put back), cuts it short.
func drain(log *slog.Logger, d time.Duration, sigs <-chan os.Signal, ran chan error) {
	if d <= 0 {
		return
	}
	log.Info("draining: forwarding until routers have moved the flows", "drain_time", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case sig := <-sigs:
		log.Warn("drain cut short", "signal", sig.String())
	case err := <-ran:
		ran <- err
	}
}

// printStats prints per-element counters, then drops by element and
// reason, then packets per backend.
func printStats(w io.Writer, stats []pipeline.ElementStats, snap *snapshot.Snapshot) {
	// Drops and per-backend metrics get tables of their own below.
	elems := make([]pipeline.ElementStats, len(stats))
	var drops []pipeline.Metric
	for i, s := range stats {
		elems[i] = s
		elems[i].Metrics = nil
		for _, m := range s.Metrics {
			switch {
			case m.Name == pipeline.DropMetric:
				drops = append(drops, m)
			case !hasLabel(m, "backend"):
				elems[i].Metrics = append(elems[i].Metrics, m)
			}
		}
	}
	fmt.Fprintln(w, "== elements")
	_ = pipeline.WriteText(w, elems)
	if len(drops) > 0 {
		fmt.Fprintln(w, "== drops")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "element\treason\tpackets\t")
		for _, m := range drops {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\n", m.Labels[0].Value, m.Labels[1].Value, m.Value)
		}
		_ = tw.Flush()
	}

	traffic := admin.Traffic(stats)
	if len(traffic) == 0 {
		return
	}
	keys := slices.SortedFunc(maps.Keys(traffic), func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	// A backend a reload removed keeps its row: its packets were sent.
	weights := map[[2]string]string{}
	for _, r := range snap.Reals.All() {
		if r.Epoch != 0 {
			weights[[2]string{snap.VIPs[r.VIP].Name, r.Backend}] = strconv.FormatUint(uint64(r.Weight), 10)
		}
	}
	fmt.Fprintln(w, "== backends")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "vip\tbackend\tweight\tpackets\tbytes\t")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t\n", k[0], k[1], cmp.Or(weights[k], "removed"), traffic[k].Packets, traffic[k].Bytes)
	}
	_ = tw.Flush()
}

func hasLabel(m pipeline.Metric, name string) bool {
	for _, l := range m.Labels {
		if l.Name == name {
			return true
		}
	}
	return false
}

// placeThreads plans where n workers run (see placement), with isolate
// moves every thread of the process off the workers' CPUs when it has
// spare ones, and returns the workers' Pin. It runs before the workers
// start, so that the threads the runtime creates later inherit the spare
// CPUs.
//
// Isolation is not the default: on the wire benchmark, whose only spare
// CPU is the generator's, the other threads took 15-19% of that CPU (4-6%
// of the worker's without), and in busy windows the worker lost packets
// with its CPU half idle: a worker returning from poll(2) whose P the
// runtime handed to another thread waits for a thread on the spare CPUs
// to give one back (docs/benchmarks.md).
func placeThreads(n int, workerCPUs string, isolate bool, log *slog.Logger) (func(int) error, error) {
	want, err := affinity.Parse(workerCPUs)
	if err != nil {
		return nil, fmt.Errorf("-worker-cpus %w", err)
	}
	allowed, err := affinity.Mask()
	if err != nil {
		return nil, err
	}
	p, err := planPlacement(allowed, n, want)
	if err != nil {
		return nil, err
	}
	if !isolate {
		return p.pin, nil
	}
	confined, err := p.confine()
	if err != nil {
		return nil, fmt.Errorf("keeping the other threads off the workers' CPUs: %w", err)
	}
	if confined {
		log.Info("workers pinned; the process's other threads kept off their CPUs",
			"worker_cpus", affinity.Format(p.workers), "other_cpus", affinity.Format(affinity.List(p.spare)))
	} else {
		log.Warn("-isolate-workers: no CPU left for the process's other threads: they share the workers'",
			"worker_cpus", affinity.Format(p.workers))
	}
	return p.pin, nil
}
