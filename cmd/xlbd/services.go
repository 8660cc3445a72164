package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/control/snapshot"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// pluginCallTimeout bounds the calls xlbd makes to plugins while it checks
// and commits a configuration (ValidateParams, Configure).
const pluginCallTimeout = 10 * time.Second

// services are what a configuration drives besides the element graph: the
// controller's snapshot, the plugin set and the health checks. A file is
// applied to them as one transaction (apply): everything is checked first,
// and a file rejected for any reason changes nothing.
type services struct {
	log   *slog.Logger
	ctl   *control.Controller
	set   *host.Set // nil: no plugin is asked (validate -plugins=false)
	hc    *host.HealthChecks
	an    *host.Announcers
	src   *host.Sources
	sched *health.Scheduler
	// docs are the config sources' documents when no source runs here:
	// those a bounded validate is given by xlbd run (see sourceDocs).
	docs []sourceDoc
	// tried are the documents the last transaction loaded.
	tried []sourceDoc
	// drain is the running file's drain time: the longest of its
	// announce blocks' drain_time, 0 without announcers.
	drain time.Duration
	// running is the file whose pipeline runs: a reload's pipeline block
	// is compared with it. Nil until the pipeline starts.
	running *xhcl.File
	// pre evaluates a file in a bounded child xlbd before a running
	// daemon evaluates it itself (see precheck); nil: not at all.
	pre *precheck
	// cache keeps what the last load parsed and decoded, so that a
	// change to one document among thousands costs about that document
	// (see hcl.Cache).
	cache *xhcl.Cache
	// overrides are the admin API's runtime changes to backends, applied
	// on top of every configuration committed. Changed by the apply
	// loop only, under the daemon's mu (the API reads them).
	overrides map[string]admin.Override
}

// defaultPluginDir is where the built-in plugins are: bin/plugins beside
// bin/xlbd, as make build lays them out.
func defaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "plugins"
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

// pluginDirFlag registers -plugin-dir on fs.
func pluginDirFlag(fs *flag.FlagSet) *string {
	return fs.String("plugin-dir", defaultPluginDir(), "where the built-in health-check plugins are, one binary per method (tcp, http, ...)")
}

// newServices returns services with nothing running; with plugins, the
// built-in health-check plugins are in pluginDir.
func newServices(pluginDir string, plugins bool, log *slog.Logger) (*services, error) {
	s := &services{log: log, ctl: control.New(), cache: &xhcl.Cache{}}
	if !plugins {
		return s, nil
	}
	hc, err := host.NewHealthChecks(pluginDir)
	if err != nil {
		return nil, err
	}
	if s.an, err = host.NewAnnouncers(pluginDir, log); err != nil {
		return nil, err
	}
	if s.src, err = host.NewSources(pluginDir, log); err != nil {
		return nil, err
	}
	s.hc, s.set = hc, host.NewSet(host.Options{Logger: log})
	s.sched = health.New(health.Options{Probers: hc.Probers(), Sink: loggingSink{s.ctl, log}})
	return s, nil
}

// candidate is a file being applied.
type candidate struct {
	start time.Time // when the transaction began, for the applied line
	f     *xhcl.File
	// docs are the config sources' documents it was loaded with.
	docs   []sourceDoc
	change *host.Change     // nil without plugins
	diags  hcl2.Diagnostics // every problem found, in file order
}

func (c *candidate) abort() {
	if c.change != nil {
		c.change.Abort()
	}
}

// rejected is the error for a file refused for the n errors printed with
// it: the log says how many, not each again.
type rejected int

func (n rejected) Error() string {
	if n == 1 {
		return "1 error, printed above"
	}
	return fmt.Sprintf("%d errors, printed above", int(n))
}

// apply checks the file at path with the config sources' current
// documents and, when they pass as a whole, makes them the running
// configuration; every problem is printed to w, in file order.
func (s *services) apply(path string, vars varFlags, w io.Writer) (*xhcl.File, error) {
	return s.transact(path, vars, w, true)
}

// validate checks the file at path as apply does, changing nothing.
func (s *services) validate(path string, vars varFlags, w io.Writer) error {
	_, err := s.transact(path, vars, w, false)
	return err
}

// transact is transactDocs with the config sources' current documents.
func (s *services) transact(path string, vars varFlags, w io.Writer, commit bool) (*xhcl.File, error) {
	return s.transactDocs(path, vars, s.sourceDocs(), w, commit)
}

// transactDocs checks the file at path with the documents docs, prints
// what it finds and commits them when commit is set and nothing is wrong.
// A panic on the way is recovered and rejects the file: the daemon keeps
// forwarding with the configuration it has.
func (s *services) transactDocs(path string, vars varFlags, docs []sourceDoc, w io.Writer, commit bool) (f *xhcl.File, err error) {
	c := &candidate{docs: docs, start: time.Now()}
	defer func() {
		if r := recover(); r != nil {
			c.abort()
			s.log.Error("internal error while loading a configuration; it is rejected", "config", path,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			f, err = nil, fmt.Errorf("internal error while loading %s: %v", path, r)
		}
	}()
	if s.running != nil && s.pre != nil {
		if err := s.pre.run(path, vars, docs); err != nil {
			printDiags(w, nil, hcl2.Diagnostics{{Severity: hcl2.DiagError, Summary: "Configuration not evaluated",
				Detail: fmt.Sprintf("%s was not loaded, so that it cannot take xlbd down: %v; simplify the file.", path, err)}})
			return nil, rejected(1)
		}
	}
	s.check(c, path, vars)
	s.tried = c.docs
	printDiags(w, c.f, c.diags)
	if n := errorCount(c.diags); n > 0 {
		c.abort()
		return nil, rejected(n)
	}
	if !commit {
		c.abort()
		return c.f, nil
	}
	if s.running != nil {
		// The seed changes at restart (see xhcl.SeedChange).
		c.f.Service.HashSeed = s.running.Service.HashSeed
	}
	s.withOverrides(&c.f.Service)
	if err := s.commit(c); err != nil {
		if errs, ok := err.(pipeline.Errors); ok {
			printDiags(w, c.f, xhcl.WithErrors(nil, errs))
			return nil, rejected(len(errs))
		}
		return nil, err
	}
	return c.f, nil
}

// check loads the file at path into c and checks it as a whole, changing
// nothing that runs: the file's own checks (HCL, control.Config.Validate),
// then with the plugins the file uses (started now when not running) each
// plugin's settings and each health_check block's parameters, as soon as
// that block itself is sound, so that one run shows every problem. A
// changed pipeline block is a warning.
func (s *services) check(c *candidate, path string, vars varFlags) {
	opts := xhcl.Options{Vars: vars, EnvVars: envVars()}
	var frags []xhcl.Fragment
	if c.docs != nil {
		frags = fragments(c.docs)
	}
	f, diags := loadFile(s.cache, path, frags, opts)
	declaredIn := f
	if diags.HasErrors() {
		// A file with errors may be decoded only in part, its source
		// blocks too (a fragment's syntax error stops the decoding):
		// taking their absence for a removal would load the file without
		// every document and apply it, with no VIP from any source.
		sopts := opts
		sopts.SourcesOnly = true
		declaredIn, _ = loadFile(nil, path, nil, sopts)
	}
	if kept, removed := declared(declaredIn, c.docs); removed {
		// A source block was removed: its documents go with it.
		c.docs = kept
		f, diags = loadFile(s.cache, path, fragments(kept), opts)
	}
	c.f = f
	var errs pipeline.Errors
	if s.set != nil {
		decls, e := s.hc.Decls(&f.Service, pluginDecls(f.Plugins), f.Checkable)
		errs = append(errs, e...)
		decls = append(decls, s.an.Decls(announcerDecls(f.Announcers))...)
		decls = append(decls, s.src.Decls(sourceDecls(f.Sources), filepath.Dir(path))...)
		c.change, e = s.set.Prepare(decls)
		errs = append(errs, e...)
		ctx, cancel := context.WithTimeout(context.Background(), pluginCallTimeout)
		defer cancel()
		errs = append(errs, s.hc.CheckParams(ctx, c.change, &f.Service, f.Checkable)...)
		errs = append(errs, s.an.CheckParams(ctx, c.change, &f.Service, f.AnnounceCheckable)...)
	}
	if s.running != nil && !diags.HasErrors() {
		diags = append(diags, xhcl.PipelineChanges(s.running, f)...)
		diags = append(diags, xhcl.SeedChange(s.running, f)...)
	}
	c.diags = xhcl.WithErrors(diags, errs)
}

// commit makes c the running configuration: the plugins' new settings (a
// refusal rolls them all back), the snapshot, then the plugin set and the
// health checks. Until the snapshot is published a failure undoes
// everything.
func (s *services) commit(c *candidate) error {
	if c.change != nil {
		ctx, cancel := context.WithTimeout(context.Background(), pluginCallTimeout)
		defer cancel()
		if errs := c.change.Commit(ctx); errs != nil {
			c.change.Abort()
			return errs
		}
	}
	if err := s.ctl.Apply(&c.f.Service); err != nil {
		c.abort()
		return err
	}
	if c.change == nil {
		s.applied(c)
		return nil
	}
	c.change.Done()
	s.hc.Use(s.set, &c.f.Service)
	names := make([]string, len(c.f.Announcers))
	s.drain = 0
	for i, a := range c.f.Announcers {
		names[i] = a.Name
		s.drain = max(s.drain, a.DrainTime)
	}
	s.an.Use(s.set, names, &c.f.Service)
	s.src.Use(s.set, sourceNames(c.f.Sources))
	err := s.sched.Configure(&c.f.Service)
	s.applied(c)
	return err
}

// applied logs the configuration c now running, once everything it drives
// has taken it, with the digest that lets operators compare nodes: the
// same configuration, however written, gives the same digest everywhere,
// and how long the change took from its load to this line.
func (s *services) applied(c *candidate) {
	snap := s.ctl.Snapshot()
	s.log.Info("configuration applied", "generation", snap.Generation, "config_digest", snapshot.ShortDigest(snap.ConfigDigest),
		"config", c.f.Filename, "took", time.Since(c.start).Round(time.Millisecond))
}

// pluginDecls are the file's plugin blocks as the plugin set takes them.
func pluginDecls(ps []xhcl.Plugin) []host.Decl {
	out := make([]host.Decl, len(ps))
	for i, p := range ps {
		out[i] = pluginDecl(p)
	}
	return out
}

// announcerDecls are the file's announce blocks as the plugin set takes
// them (the announcers' adapter sets their kind and built-in paths).
func announcerDecls(as []xhcl.Announcer) []host.Decl {
	out := make([]host.Decl, len(as))
	for i, a := range as {
		out[i] = pluginDecl(a.Plugin)
	}
	return out
}

func pluginDecl(p xhcl.Plugin) host.Decl {
	return host.Decl{Spec: host.Spec{Name: p.Name, Path: p.Path, SHA256: p.SHA256, Config: p.Config},
		Range: p.Range, AttrRange: p.AttrRange}
}

func errorCount(diags hcl2.Diagnostics) int {
	n := 0
	for _, d := range diags {
		if d.Severity == hcl2.DiagError {
			n++
		}
	}
	return n
}

// start runs the health checks.
func (s *services) start() {
	if s.sched != nil {
		s.sched.Start()
	}
}

// stop stops the health checks, then the plugins.
func (s *services) stop() {
	if s.sched != nil {
		s.sched.Stop()
	}
	if s.src != nil {
		s.src.Stop()
	}
	if s.set != nil {
		s.set.Stop()
	}
}

// print writes the health checks' counters, each checked backend's health,
// the route announcers' state and the plugins' supervision state, as the
// tables after a run.
func (s *services) print(w io.Writer) {
	if s.sched == nil {
		return
	}
	st := s.sched.Stats()
	announcers := s.an.Statuses()
	sources := s.src.States()
	if len(st.Checks) == 0 && len(announcers) == 0 && len(sources) == 0 {
		return
	}
	tw := newTable(w)
	if len(st.Checks) > 0 {
		s.printHealth(w, tw, st)
	}
	if len(announcers) > 0 {
		fmt.Fprintln(w, "== route announcers")
		fmt.Fprintln(tw, "announcer\tstate\troutes\tsends\tlast_error")
		for _, a := range announcers {
			state := "?"
			if p := s.set.Plugin(a.Name); p != nil {
				state = p.Status().State.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", a.Name, state, a.Routes, a.Sends, a.LastError)
		}
		_ = tw.Flush()
	}
	printSources(w, sources)
	fmt.Fprintln(w, "== plugins")
	fmt.Fprintln(tw, "plugin\tstate\tversion\trestarts\tlast_error")
	for _, ps := range s.set.Statuses() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", ps.Name, ps.State, ps.Info.Version, ps.Restarts, ps.LastError)
	}
	_ = tw.Flush()
}

// printHealth writes the health checks' tables.
func (s *services) printHealth(w io.Writer, tw *tabwriter.Writer, st health.Stats) {
	fmt.Fprintln(w, "== health checks")
	fmt.Fprintln(tw, "pool\tmethod\ttargets\tcalls\tprobes\tunknown\tbatch_errors\toverruns\tlast_batch_error")
	for _, c := range st.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", c.Pool, c.Method, c.Targets, c.Calls, c.Probes,
			c.Unknowns, c.ProberErrors, c.Overruns, c.LastProberError)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "== backend health")
	fmt.Fprintln(tw, "backend\thealthy\tsuppressed\ttransitions\tmethods")
	for _, b := range st.Backends {
		var methods []string
		for _, m := range b.Methods {
			state := "up"
			if !m.Up {
				state = "down"
			}
			if m.Last.Err != "" {
				state += " (" + m.Last.Err + ")"
			}
			methods = append(methods, m.Method+" "+state)
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t%d\t%s\n", b.Name, b.Healthy, b.Suppressed, b.Transitions, strings.Join(methods, ", "))
	}
	_ = tw.Flush()
}

// loggingSink hands health changes to the controller and logs each, so an
// operator sees why a backend stopped getting flows.
type loggingSink struct {
	ctl *control.Controller
	log *slog.Logger
}

// SetHealth publishes first and logs after, so that the log line means the
// data plane already has the new tables.
func (s loggingSink) SetHealth(changes map[string]bool) error {
	err := s.ctl.SetHealth(changes)
	for _, b := range slices.Sorted(maps.Keys(changes)) {
		if changes[b] {
			s.log.Info("backend healthy", "backend", b, "state", "up", "generation", s.ctl.Snapshot().Generation)
		} else {
			s.log.Warn("backend unhealthy: no new flows, its flows are re-selected", "backend", b, "state", "down", "generation", s.ctl.Snapshot().Generation)
		}
	}
	return err
}
