package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// HealthChecks adapts a Set to health checking: which plugin serves each
// health_check block's method, each block's parameters checked by that
// plugin, and the Probers control/health runs the checks with.
type HealthChecks struct {
	dir     string
	probers map[string]health.Prober
}

// ownParams are the health_check attributes control/health reads itself;
// every other one is a parameter of the method's plugin.
var ownParams = []string{"interval", "timeout", "rise", "fall", "port"}

// NewHealthChecks returns the adapter for built-in plugins in dir, one
// binary per method (dir/tcp, dir/http), made absolute so that no method is
// looked up on $PATH.
func NewHealthChecks(dir string) (*HealthChecks, error) {
	abs, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	return &HealthChecks{dir: abs, probers: map[string]health.Prober{}}, nil
}

// absDir makes a directory of built-in plugins absolute, so that no
// built-in plugin is looked up on $PATH.
func absDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("plugin directory %s: %w", dir, err)
	}
	return abs, nil
}

// Probers is the map for health.Options.Probers; Use keeps it current.
func (h *HealthChecks) Probers() map[string]health.Prober { return h.probers }

// Decls returns the plugins cfg's health checks use, one per method: the
// declared plugin of that name (from a plugin block, its path defaulting
// to the built-in's: a missing one fails to start, at the block), else the built-in in the plugin directory, placed at
// the first health check that uses it. A block for which checkable is
// false is left out (its errors are reported already). A method with
// neither a declaration nor a built-in is an error at each block that uses
// it, naming the methods there are.
func (h *HealthChecks) Decls(cfg *control.Config, declared []Decl, checkable func(control.HealthCheck) bool) ([]Decl, pipeline.Errors) {
	byName := map[string]Decl{}
	for _, d := range declared {
		byName[d.Name] = d
	}
	var (
		out  []Decl
		errs pipeline.Errors
		seen = map[string]bool{}
	)
	for _, p := range cfg.Pools {
		for _, hc := range p.HealthChecks {
			if !checkable(hc) {
				continue
			}
			d, ok := byName[hc.Method]
			if !ok {
				d = Decl{Spec: Spec{Name: hc.Method}, Range: hc.Range}
			}
			d.Kind = sdk.KindHealthChecker
			if d.Path == "" {
				d.Path = filepath.Join(h.dir, hc.Method)
				if _, err := os.Stat(d.Path); err != nil && !ok {
					errs = append(errs, h.unknownMethod(p.Name, hc, slices.Sorted(maps.Keys(byName))))
					continue
				}
			}
			if seen[hc.Method] {
				continue
			}
			seen[hc.Method] = true
			out = append(out, d)
		}
	}
	return out, errs
}

// unknownMethod is the error for a health check whose method no plugin
// serves.
func (h *HealthChecks) unknownMethod(pool string, hc control.HealthCheck, declared []string) *pipeline.Error {
	builtins := h.builtins()
	known := "the plugin directory " + h.dir + " has no built-in methods"
	if len(builtins) > 0 {
		known = "the built-in methods (in " + h.dir + ") are " + strings.Join(builtins, ", ")
	}
	if len(declared) > 0 {
		known += "; the declared plugins are " + strings.Join(declared, ", ")
	}
	return &pipeline.Error{Range: hc.Range, Summary: "Unknown health-check method",
		Detail: fmt.Sprintf("Pool %q health check %q: no plugin serves this method%s: %s. Correct the method, or declare its plugin with plugin %q { path = \"...\" }, or point xlbd's -plugin-dir at the built-ins.",
			pool, hc.Method, pipeline.Suggest(hc.Method, append(builtins, declared...)), known, hc.Method)}
}

// builtins lists the executables in the plugin directory, by name.
func (h *HealthChecks) builtins() []string {
	entries, err := os.ReadDir(h.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

// CheckParams checks each checkable health check's parameters with the
// plugin that serves its method in c: against the plugin's Info.Params
// (Conform; the converted values replace those in cfg), then by the
// plugin's ValidateParams. A refusal is a pipeline.Error at the attribute.
// A plugin that did not start (its refusal is reported) cannot check them
// itself, but its schema still does, when it reported one before failing.
func (h *HealthChecks) CheckParams(ctx context.Context, c *Change, cfg *control.Config, checkable func(control.HealthCheck) bool) pipeline.Errors {
	var errs pipeline.Errors
	for pi := range cfg.Pools {
		p := &cfg.Pools[pi]
		for i := range p.HealthChecks {
			hc := &p.HealthChecks[i]
			info, ok := c.Info(hc.Method)
			if !ok || !checkable(*hc) {
				continue
			}
			var validate func(context.Context, []byte) error
			if pl := c.Plugin(hc.Method); pl != nil {
				validate = func(ctx context.Context, js []byte) error {
					cl, err := pl.HealthChecker()
					if err != nil {
						return err
					}
					return cl.ValidateParams(ctx, js)
				}
			}
			var err error
			hc.Params, err = checkParams(ctx, info.Params, hc.Params, validate, ownParams...)
			what := fmt.Sprintf("pool %q health check %q", p.Name, hc.Method)
			errs = append(errs, Place(err, what, hc.Range, hc.AttrRange, "Invalid health-check parameter", "Health-check parameters not checked")...)
		}
	}
	return errs
}

// checkParams checks one block's parameters against a plugin's schema
// (Conform) and then, when validate is set (the plugin runs), by the
// plugin itself. It returns the conformed parameters when both pass and
// params as they were otherwise, with every refusal. The plugin checks
// what conforms, so that one run shows a misspelt parameter and a bad
// value of another.
func checkParams(ctx context.Context, schema []sdk.Attribute, params map[string]json.RawMessage,
	validate func(context.Context, []byte) error, own ...string) (map[string]json.RawMessage, error) {
	conformed, err := Conform(schema, params, own...)
	if validate == nil {
		return params, err
	}
	perr := validate(ctx, control.ParamsJSON(conformed))
	if err == nil && perr == nil {
		return conformed, nil
	}
	return params, errors.Join(append(sdk.Unjoin(err), sdk.Unjoin(notRepeated(perr, err))...)...)
}

// notRepeated is the plugin's refusal less what the schema check (before)
// already said: an attribute it refused, or a problem with the whole block
// (a required parameter missing) when it found one.
func notRepeated(plugin, before error) error {
	said := map[string]bool{}
	for _, e := range sdk.Unjoin(before) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) {
			said[ce.Attribute] = true
		}
	}
	var out []error
	for _, e := range sdk.Unjoin(plugin) {
		var ce *sdk.ConfigError
		if errors.As(e, &ce) && said[ce.Attribute] {
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Use points the probers at the set's plugins for cfg's methods (and
// forgets the others): after Change.Done, before the scheduler's Configure.
func (h *HealthChecks) Use(s *Set, cfg *control.Config) {
	clear(h.probers)
	for _, p := range cfg.Pools {
		for _, hc := range p.HealthChecks {
			if pl := s.Plugin(hc.Method); pl != nil {
				h.probers[hc.Method] = pl.Prober()
			}
		}
	}
}
