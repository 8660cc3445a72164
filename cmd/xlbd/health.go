package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// pluginCallTimeout bounds the calls xlbd makes to a plugin while loading
// a configuration (Configure, ValidateParams).
const pluginCallTimeout = 10 * time.Second

// healthChecks runs one health-check plugin per method the configuration
// uses, each serving every pool's checks of that method, and the scheduler
// that drives them and publishes to the controller.
type healthChecks struct {
	dir     string
	log     *slog.Logger
	sched   *health.Scheduler
	plugins map[string]*host.Plugin
	probers map[string]health.Prober
	// config is the plugin block's configuration each plugin last accepted.
	config map[string][]byte
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

func newHealthChecks(dir string, ctl *control.Controller, log *slog.Logger) *healthChecks {
	h := &healthChecks{dir: dir, log: log, plugins: map[string]*host.Plugin{}, probers: map[string]health.Prober{}, config: map[string][]byte{}}
	h.sched = health.New(health.Options{Probers: h.probers, Sink: loggingSink{ctl, log}})
	return h
}

// prepare readies the plugins of the methods cfg uses and has them check
// every health_check block's parameters, before anything is applied: a
// refusal comes back as pipeline.Errors at the attribute's line, and the
// running configuration stays. Parameters are converted in cfg to the
// types the plugin's schema declares. A method's plugin is the file's plugin block
// of that name (path, SHA-256, settings), else the built-in of that name in
// the plugin directory. A running plugin whose block's settings changed is
// reconfigured; a changed path or checksum takes effect at xlbd's restart.
// Plugins of methods no longer used keep running (a later reload may use
// them again).
func (h *healthChecks) prepare(cfg *control.Config, decls []xhcl.Plugin) error {
	declared := map[string]xhcl.Plugin{}
	for _, d := range decls {
		declared[d.Name] = d
	}
	// Each method with its first health check, where an undeclared
	// plugin's failure is reported.
	methods := map[string]pipeline.Range{}
	for _, p := range cfg.Pools {
		for _, hc := range p.HealthChecks {
			if _, ok := methods[hc.Method]; !ok {
				methods[hc.Method] = hc.Range
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), pluginCallTimeout)
	defer cancel()
	var errs pipeline.Errors
	for _, method := range slices.Sorted(maps.Keys(methods)) {
		d, ok := declared[method]
		if !ok {
			d = xhcl.Plugin{Name: method, Range: methods[method]}
		}
		if err := h.ready(ctx, d); err != nil {
			errs = append(errs, pluginErrors(err, d)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	for _, p := range cfg.Pools {
		for i := range p.HealthChecks {
			hc := &p.HealthChecks[i]
			pl := h.plugins[hc.Method]
			params, err := host.Conform(pl.Status().Info.Params, hc.Params, "interval", "timeout", "rise", "fall", "port")
			if err == nil {
				hc.Params = params
				var c *sdk.HealthCheckerClient
				if c, err = pl.HealthChecker(); err == nil {
					err = c.ValidateParams(ctx, hc.ParamsJSON())
				}
			}
			errs = append(errs, paramErrors(err, p.Name, *hc)...)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// ready starts d's plugin, or reconfigures it when its settings changed.
func (h *healthChecks) ready(ctx context.Context, d xhcl.Plugin) error {
	config := d.Config
	if len(config) == 0 {
		config = []byte("{}")
	}
	if p := h.plugins[d.Name]; p != nil {
		if bytes.Equal(config, h.config[d.Name]) {
			return nil
		}
		if err := p.Reconfigure(ctx, config); err != nil {
			return err
		}
		h.config[d.Name] = config
		h.log.Info("health-check plugin reconfigured", "plugin", d.Name, "config", string(config))
		return nil
	}
	spec := host.Spec{Name: d.Name, Path: d.Path, SHA256: d.SHA256, Kind: sdk.KindHealthChecker, Config: config}
	if spec.Path == "" {
		// Absolute: a relative -plugin-dir must not become a $PATH lookup.
		path, err := filepath.Abs(filepath.Join(h.dir, d.Name))
		if err != nil {
			return err
		}
		spec.Path = path
		if _, err := os.Stat(spec.Path); err != nil {
			return fmt.Errorf("no built-in plugin for health-check method %q (%v); declare its binary with plugin %q { path = \"...\" }, or point -plugin-dir at the built-ins", d.Name, err, d.Name)
		}
	}
	p, err := host.New(spec, host.Options{Logger: h.log})
	if err != nil {
		return err
	}
	if err := p.Start(); err != nil {
		p.Stop()
		return err
	}
	h.plugins[d.Name], h.probers[d.Name], h.config[d.Name] = p, p.Prober(), config
	h.log.Info("health-check plugin started", "plugin", d.Name, "path", spec.Path, "checksum_verified", spec.SHA256 != "",
		"version", p.Status().Info.Version)
	return nil
}

// configure hands cfg, prepared and applied, to the scheduler.
func (h *healthChecks) configure(cfg *control.Config) error { return h.sched.Configure(cfg) }

// pluginErrors places a plugin's start or configuration failure in the
// file: refused settings at their attributes of the plugin block, anything
// else at the block (or at the first health check using a built-in).
func pluginErrors(err error, d xhcl.Plugin) pipeline.Errors {
	what := fmt.Sprintf("health-check plugin %q", d.Name)
	return configErrors(err, d.Range, d.AttrRange, "Plugin refused its settings", "Health-check plugin not started", what)
}

// paramErrors places a plugin's refusal of a health_check block's
// parameters at their attributes.
func paramErrors(err error, pool string, hc control.HealthCheck) pipeline.Errors {
	what := fmt.Sprintf("pool %q health check %q", pool, hc.Method)
	return configErrors(err, hc.Range, hc.AttrRange, "Invalid health-check parameter", "Health-check parameters not checked", what)
}

// configErrors turns err into one pipeline.Error per refused attribute
// (*sdk.ConfigError, at its range) or one for the whole block.
func configErrors(err error, block pipeline.Range, attrs map[string]pipeline.Range, refused, failed, what string) pipeline.Errors {
	var out pipeline.Errors
	for _, e := range sdk.Unjoin(err) {
		var ce *sdk.ConfigError
		if !errors.As(e, &ce) {
			// Not about an attribute: the error names the plugin itself.
			out = append(out, &pipeline.Error{Range: block, Summary: failed, Detail: strings.TrimSuffix(e.Error(), ".") + "."})
			continue
		}
		r, ok := attrs[ce.Attribute]
		if !ok {
			r = block
		}
		detail := fmt.Sprintf("%s: %s.", what, ce.Message)
		if ce.Attribute != "" {
			detail = fmt.Sprintf("%s: %s: %s.", what, ce.Attribute, ce.Message)
		}
		out = append(out, &pipeline.Error{Range: r, Summary: refused, Detail: detail})
	}
	return out
}

func (h *healthChecks) start() { h.sched.Start() }

// print writes the health checks' counters, each checked backend's health
// and the plugins' supervision state, as the tables after a run.
func (h *healthChecks) print(w io.Writer) {
	st := h.sched.Stats()
	if len(st.Checks) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
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
	fmt.Fprintln(w, "== plugins")
	fmt.Fprintln(tw, "plugin\tstate\tversion\trestarts\tlast_error")
	for _, name := range slices.Sorted(maps.Keys(h.plugins)) {
		ps := h.plugins[name].Status()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", name, ps.State, ps.Info.Version, ps.Restarts, ps.LastError)
	}
	_ = tw.Flush()
}

func (h *healthChecks) stop() {
	h.sched.Stop()
	for _, p := range h.plugins {
		p.Stop()
	}
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
			s.log.Info("backend healthy", "backend", b, "generation", s.ctl.Snapshot().Generation)
		} else {
			s.log.Warn("backend unhealthy: no new flows, its flows are re-selected", "backend", b, "generation", s.ctl.Snapshot().Generation)
		}
	}
	return err
}
