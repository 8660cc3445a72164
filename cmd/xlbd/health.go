package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// healthChecks runs one health-check plugin per method the configuration
// uses and the scheduler that drives them and publishes to the controller.
type healthChecks struct {
	dir     string
	log     *slog.Logger
	sched   *health.Scheduler
	plugins map[string]*host.Plugin
	probers map[string]health.Prober
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

func newHealthChecks(dir string, ctl *control.Controller, log *slog.Logger) *healthChecks {
	h := &healthChecks{dir: dir, log: log, plugins: map[string]*host.Plugin{}, probers: map[string]health.Prober{}}
	h.sched = health.New(health.Options{Probers: h.probers, Sink: loggingSink{ctl, log}})
	return h
}

// configure starts the plugins of methods cfg uses for the first time, then
// hands cfg to the scheduler. A method's plugin is the file's plugin block
// of that name (path and SHA-256), else the built-in of that name in the
// plugin directory. Plugins of methods no longer used keep running until
// xlbd stops (a later reload may use them again); a plugin block changed
// for a running plugin takes effect at the next restart.
func (h *healthChecks) configure(cfg *control.Config, decls []xhcl.Plugin) error {
	settings, err := methodSettings(cfg)
	if err != nil {
		return err
	}
	declared := map[string]xhcl.Plugin{}
	for _, d := range decls {
		declared[d.Name] = d
	}
	for _, method := range slices.Sorted(maps.Keys(settings)) {
		if h.plugins[method] != nil {
			continue
		}
		spec := host.Spec{Name: method, Path: filepath.Join(h.dir, method), Kind: sdk.KindHealthChecker, Config: settings[method]}
		if d, ok := declared[method]; ok {
			spec.Path, spec.SHA256 = d.Path, d.SHA256
		}
		p, err := host.New(spec, host.Options{Logger: h.log})
		if err != nil {
			return err
		}
		if err := p.Start(); err != nil {
			return fmt.Errorf("health-check method %q: %w", method, err)
		}
		h.plugins[method] = p
		h.probers[method] = p.Prober()
		h.log.Info("health-check plugin started", "plugin", method, "path", spec.Path, "checksum_verified", spec.SHA256 != "")
	}
	return h.sched.Configure(cfg)
}

// methodSettings returns, for each method, the plugin configuration: the
// health check's parameters other than port (which travels with each
// target). A plugin serves every pool that uses its method, so pools must
// agree on those settings.
func methodSettings(cfg *control.Config) (map[string][]byte, error) {
	out := map[string][]byte{}
	from := map[string]string{}
	for _, p := range cfg.Pools {
		for _, hc := range p.HealthChecks {
			params := maps.Clone(hc.Params)
			delete(params, "port")
			if params == nil {
				params = map[string]string{}
			}
			js, err := json.Marshal(params)
			if err != nil {
				return nil, err
			}
			if prev, ok := out[hc.Method]; ok && string(prev) != string(js) {
				return nil, fmt.Errorf("pools %q and %q configure health-check method %q differently (%s, %s): one plugin serves a method, so give them the same settings",
					from[hc.Method], p.Name, hc.Method, prev, js)
			}
			out[hc.Method], from[hc.Method] = js, p.Name
		}
	}
	return out, nil
}

func (h *healthChecks) start() { h.sched.Start() }

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
