package hcl

import (
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// Plugin is a plugin block: the binary that serves the health-check method
// named by its label, checked against SHA256 before every launch when set,
// and the plugin's own settings.
type Plugin struct {
	Name string
	// Path is absolute (a relative path is resolved against the file's
	// directory here, never looked up on $PATH); empty: the built-in.
	Path   string
	SHA256 string // lower-case hex; empty: not checked
	// Config is every other attribute of the block, evaluated to
	// constants, as the JSON object the plugin's Configure receives (keys
	// sorted; "{}" when there are none).
	Config    []byte
	Range     pipeline.Range
	AttrRange map[string]pipeline.Range
}

type pluginBody struct {
	Path   string   `hcl:"path,optional"`
	SHA256 string   `hcl:"sha256,optional"`
	Config hcl.Body `hcl:",remain"`
}

func (l *loader) decodePlugins(blocks []*hcl.Block) {
	seen := map[string]hcl.Range{}
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, dup := seen[name]; dup {
			l.errorf(b.LabelRanges[0], "Duplicate plugin", "A plugin named %q was already declared at %s; declare each plugin once.", name, pos(prev))
			continue
		}
		seen[name] = b.DefRange
		if p, ok := l.decodePlugin(b); ok && !l.failedIn(b.DefRange, b.Body) {
			l.out.Plugins = append(l.out.Plugins, p)
			continue
		}
		if l.out.badPlugins == nil {
			l.out.badPlugins = map[string]bool{}
		}
		l.out.badPlugins[name] = true
	}
}

func (l *loader) decodePlugin(b *hcl.Block) (Plugin, bool) {
	var pb pluginBody
	if !l.add(gohcl.DecodeBody(b.Body, l.ctx, &pb)) {
		return Plugin{}, false
	}
	attrs := attrRanges(b.Body)
	if pb.SHA256 != "" {
		if d, err := hex.DecodeString(pb.SHA256); err != nil || len(d) != 32 {
			l.errorf(toHCLRange(attrs["sha256"]), "Invalid checksum",
				"sha256 must be the 64 hexadecimal digits sha256sum prints for the plugin binary, not %q.", pb.SHA256)
			return Plugin{}, false
		}
	}
	if pb.SHA256 != "" && pb.Path == "" {
		l.errorf(toHCLRange(attrs["sha256"]), "Checksum without path",
			"sha256 checks the binary at path; a built-in plugin (no path) comes with xlbd and has none.")
		return Plugin{}, false
	}
	path := pb.Path
	if path != "" && !filepath.IsAbs(path) {
		// Absolute, so that exec runs this file and never one of the
		// same name on $PATH (filepath.Join(".", "check") is "check").
		abs, err := filepath.Abs(filepath.Join(l.dir, path))
		if err != nil {
			l.errorf(toHCLRange(attrs["path"]), "Invalid plugin path", "%s cannot be made absolute (%v); write an absolute path.", path, err)
			return Plugin{}, false
		}
		path = abs
	}
	return Plugin{Name: b.Labels[0], Path: path, SHA256: strings.ToLower(pb.SHA256),
		Config: jsonObject(l.constants(pb.Config)), Range: toRange(b.DefRange), AttrRange: attrs}, true
}

// markUncheckable records the health_check blocks that have an error of
// their own (see File.Checkable). It runs once every diagnostic is in.
func (l *loader) markUncheckable() {
	for _, pool := range l.body.Blocks {
		if pool.Type != "pool" {
			continue
		}
		for _, b := range pool.Body.Blocks {
			if b.Type == "health_check" && l.failedIn(b.DefRange(), b.Body) {
				if l.out.uncheckable == nil {
					l.out.uncheckable = map[pipeline.Range]bool{}
				}
				l.out.uncheckable[toRange(b.DefRange())] = true
			}
		}
	}
}

// failedIn reports whether the block with header def and body has an
// error, reported or dropped as the echo of one reported elsewhere (an
// expression referring to a variable that failed).
func (l *loader) failedIn(def hcl.Range, body hcl.Body) bool {
	whole := hcl.RangeBetween(def, body.(*hclsyntax.Body).SrcRange)
	for _, d := range l.diags {
		if d.Severity == hcl.DiagError && d.Subject != nil && contains(whole, *d.Subject) {
			return true
		}
	}
	for _, p := range l.poisonRanges {
		if contains(whole, p) {
			return true
		}
	}
	return false
}

// Checkable reports whether a plugin may check hc's parameters: its
// health_check block and the plugin block of its method (if any) have no
// error of their own. A parameter that failed to evaluate is missing from
// Params, and a plugin would only echo that error (say, as a missing
// required parameter). Other errors in the file do not matter: a plugin
// checks each block as soon as the block itself is sound, so that one run
// shows every problem.
func (f *File) Checkable(hc control.HealthCheck) bool {
	return !f.uncheckable[hc.Range] && !f.badPlugins[hc.Method]
}

// WithErrors returns diags and errs (found after loading, by plugins) as
// one list in file order, for WriteDiagnostics.
func WithErrors(diags hcl.Diagnostics, errs pipeline.Errors) hcl.Diagnostics {
	out := append(slices.Clone(diags), FromErrors(errs)...)
	sortDiags(out)
	return out
}

// jsonObject is m as one JSON object, keys sorted.
func jsonObject(m map[string]json.RawMessage) []byte {
	js, err := json.Marshal(m)
	if err != nil || len(m) == 0 {
		// constants made every value with ctyjson: only an empty m is here.
		return []byte("{}")
	}
	return js
}
