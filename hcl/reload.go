package hcl

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/pipeline"
)

// PipelineChanges compares next's pipeline block with running's (the
// pipeline a process runs) and returns nil when they are the same, else one
// warning that names every difference: elements added or removed, an
// element's type or settings, connections, workers. A reload applies the
// service configuration only: the graph changes at the next restart,
// because per-worker state such as ConnTrack tables cannot be carried into
// a different graph. Settings are compared as the elements are configured
// (defaults and variables applied), not as written.
func PipelineChanges(running, next *File) hcl.Diagnostics {
	var changes []string
	var at *pipeline.Range
	note := func(r pipeline.Range, format string, args ...any) {
		changes = append(changes, fmt.Sprintf(format, args...))
		if at == nil && r != (pipeline.Range{}) {
			at = &r
		}
	}
	old := map[string]pipeline.ElementDecl{}
	for _, d := range running.Spec.Elements {
		old[d.Name] = d
	}
	seen := map[string]bool{}
	for _, d := range next.Spec.Elements {
		seen[d.Name] = true
		o, ok := old[d.Name]
		switch {
		case !ok:
			note(d.Range, "element `%s` (%s) added", d.Name, d.Type)
		case o.Type != d.Type:
			note(d.TypeRange, "element `%s` changed type from %s to %s", d.Name, o.Type, d.Type)
		default:
			if diff := settingsDiff(o, d); diff != "" {
				note(d.Range, "element `%s` (%s): %s", d.Name, d.Type, diff)
			}
		}
	}
	for _, d := range running.Spec.Elements {
		if !seen[d.Name] {
			note(pipeline.Range{}, "element `%s` (%s) removed", d.Name, d.Type)
		}
	}
	oldConns := connections(running.Spec)
	newConns := connections(next.Spec)
	for _, c := range next.Spec.Connections {
		if s := connString(c); !oldConns[s] {
			note(c.From.Range, "connection %s added", s)
			oldConns[s] = true // written twice, noted once
		}
	}
	for _, c := range running.Spec.Connections {
		if s := connString(c); !newConns[s] {
			note(pipeline.Range{}, "connection %s removed", s)
			newConns[s] = true
		}
	}
	if running.Workers != next.Workers {
		note(pipeline.Range{}, "workers changed from %s to %s", workers(running.Workers), workers(next.Workers))
	}
	if len(changes) == 0 {
		return nil
	}
	d := &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "Pipeline changes take effect at restart",
		Detail: "The pipeline block differs from the one running: " + strings.Join(changes, "; ") +
			". A reload applies VIPs, pools, backends, health checks and plugins; restart xlbd to run the new pipeline (per-worker state such as ConnTrack tables cannot be carried into a different graph).",
	}
	if at != nil {
		d.Subject = toHCLRange(*at).Ptr()
	}
	return hcl.Diagnostics{d}
}

// SeedChange returns a warning when next's hash_seed differs from
// running's (the seed a process started with), nil otherwise. Like the
// pipeline, the seed changes at the next restart, and the caller keeps
// running's: ConnTrack finds an established flow by its hash, so a new
// seed applied live would send every established flow to MaglevSelect
// again, and to another backend wherever the new hash picks another slot.
func SeedChange(running, next *File) hcl.Diagnostics {
	if running.Service.HashSeed == next.Service.HashSeed {
		return nil
	}
	d := &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "hash_seed changes take effect at restart",
		Detail: fmt.Sprintf("hash_seed is %d here and %d in the running configuration; the running seed stays until xlbd restarts. "+
			"ConnTrack finds an established flow by the flow hash, so a new seed applied live would re-select every established flow. "+
			"Change it on every node of a fleet together, and restart them.", next.Service.HashSeed, running.Service.HashSeed),
	}
	if next.HashSeedRange != (pipeline.Range{}) {
		d.Subject = toHCLRange(next.HashSeedRange).Ptr()
	}
	return hcl.Diagnostics{d}
}

func connString(c pipeline.Connection) string { return c.From.String() + " -> " + c.To.String() }

func connections(s pipeline.Spec) map[string]bool {
	m := map[string]bool{}
	for _, c := range s.Connections {
		m[connString(c)] = true
	}
	return m
}

func workers(n int) string {
	if n == 0 {
		return "0 (one per RX queue)"
	}
	return fmt.Sprint(n)
}

// settingsDiff lists the settings of two declarations of one element type
// that differ, as "name old → new", or "" when none does (or either
// cannot be configured: its errors are reported elsewhere).
func settingsDiff(a, b pipeline.ElementDecl) string {
	as, aok := settings(a)
	bs, bok := settings(b)
	if !aok || !bok {
		return ""
	}
	var out []string
	for _, f := range as {
		i := slices.IndexFunc(bs, func(g setting) bool { return g.name == f.name })
		if i >= 0 && !reflect.DeepEqual(f.value, bs[i].value) {
			out = append(out, fmt.Sprintf("%s %s → %s", f.name, show(f.value), show(bs[i].value)))
		}
	}
	return strings.Join(out, ", ")
}

type setting struct {
	name  string
	value any
}

// settings configures a fresh instance of d's type as d says and returns
// its HCL-tagged fields in declaration order.
func settings(d pipeline.ElementDecl) ([]setting, bool) {
	typ, ok := pipeline.Lookup(d.Type)
	if !ok {
		return nil, false
	}
	el := typ.New()
	if d.Configure != nil && d.Configure(el) != nil {
		return nil, false
	}
	v := reflect.ValueOf(el)
	if !isStructPtr(v) {
		return nil, true
	}
	var out []setting
	t := v.Elem().Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("hcl"), ",")
		if name != "" && t.Field(i).IsExported() {
			out = append(out, setting{name, v.Elem().Field(i).Interface()})
		}
	}
	return out, true
}

func show(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}
