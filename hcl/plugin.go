package hcl

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

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
	Config []byte
	Range  pipeline.Range
	// AttrRange holds the range of each attribute, and of each item of a
	// list or object written out in one, under the path a plugin names it
	// by in a refusal: neighbors[1].peer_as (see nestedRanges).
	AttrRange pipeline.AttrRanges
}

// Announcer is an announce block: a route-announcer plugin (the label
// names it; without path it is the built-in of that name) and how long
// xlbd keeps forwarding after withdrawing its routes on SIGTERM.
type Announcer struct {
	Plugin
	// DrainTime is the wait between withdrawing every route and stopping
	// the data plane.
	DrainTime time.Duration
}

// Source is a source block: a config-source plugin (the label names it;
// without path it is the built-in of that name) and its settings. It runs
// in the main file's directory, so relative paths in its settings are
// relative to the file.
type Source struct {
	Plugin
}

// DefaultDrainTime is an announce block's drain_time when it sets none:
// time for a router to move the flows (BGP UPDATE processing and FIB
// programming take well under a second; five leave a margin).
const DefaultDrainTime = 5 * time.Second

type pluginBody struct {
	Path   string   `hcl:"path,optional"`
	SHA256 string   `hcl:"sha256,optional"`
	Config hcl.Body `hcl:",remain"`
}

type announceBody struct {
	Path      string   `hcl:"path,optional"`
	SHA256    string   `hcl:"sha256,optional"`
	DrainTime string   `hcl:"drain_time,optional"`
	Config    hcl.Body `hcl:",remain"`
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
		var pb pluginBody
		if l.add(gohcl.DecodeBody(b.Body, l.ctx, &pb)) {
			if p, ok := l.plugin(b, pb); ok && !l.failedIn(b.DefRange, b.Body) {
				l.out.Plugins = append(l.out.Plugins, p)
				continue
			}
		}
		l.markBad(name)
	}
}

// decodeAnnouncers decodes the announce blocks. Plugins and announcers
// share one set of names (the plugin set's): a name used by both is an
// error at the announce block that names the plugin block.
func (l *loader) decodeAnnouncers(blocks, plugins []*hcl.Block) {
	seen := map[string]hcl.Range{}
	for _, b := range plugins {
		if _, dup := seen[b.Labels[0]]; !dup {
			seen[b.Labels[0]] = b.DefRange
		}
	}
	announced := map[string]bool{}
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, dup := seen[name]; dup {
			if announced[name] {
				l.errorf(b.LabelRanges[0], "Duplicate announcer", "A route announcer named %q was already declared at %s; declare each announcer once.", name, pos(prev))
			} else {
				l.errorf(b.LabelRanges[0], "Name used twice", "The name %q is taken by the plugin block at %s; a plugin and a route announcer need different names, so rename one of them.", name, pos(prev))
				l.markBad(name)
			}
			continue
		}
		seen[name], announced[name] = b.DefRange, true
		var ab announceBody
		if l.add(gohcl.DecodeBody(b.Body, l.ctx, &ab)) {
			p, ok := l.plugin(b, pluginBody{Path: ab.Path, SHA256: ab.SHA256, Config: ab.Config})
			a := Announcer{Plugin: p, DrainTime: DefaultDrainTime}
			if ab.DrainTime != "" {
				d, err := time.ParseDuration(ab.DrainTime)
				if err != nil || d < 0 {
					l.errorf(b.Body.(*hclsyntax.Body).Attributes["drain_time"].Expr.Range(), "Invalid duration",
						"drain_time must be a duration such as \"5s\" (\"0s\": stop at once), not %q.", ab.DrainTime)
					ok = false
				}
				a.DrainTime = d
			}
			if ok && !l.failedIn(b.DefRange, b.Body) {
				l.out.Announcers = append(l.out.Announcers, a)
				continue
			}
		}
		l.markBad(name)
	}
}

// decodeSources decodes the source blocks. Sources share the plugin set's
// names with plugin and announce blocks (taken): a name used twice is an
// error at the source block that names the other block.
func (l *loader) decodeSources(blocks []*hcl.Block, taken ...[]*hcl.Block) {
	seen := map[string]hcl.Range{}
	for _, bs := range taken {
		for _, b := range bs {
			if _, dup := seen[b.Labels[0]]; !dup {
				seen[b.Labels[0]] = b.DefRange
			}
		}
	}
	sources := map[string]bool{}
	for _, b := range blocks {
		name := b.Labels[0]
		if prev, dup := seen[name]; dup {
			if sources[name] {
				l.errorf(b.LabelRanges[0], "Duplicate source", "A config source named %q was already declared at %s; declare each source once.", name, pos(prev))
			} else {
				l.errorf(b.LabelRanges[0], "Name used twice", "The name %q is taken by the block at %s; plugins, route announcers and config sources need different names, so rename one of them.", name, pos(prev))
			}
			continue
		}
		seen[name], sources[name] = b.DefRange, true
		var pb pluginBody
		if l.add(gohcl.DecodeBody(b.Body, l.ctx, &pb)) {
			if p, ok := l.plugin(b, pb); ok && !l.failedIn(b.DefRange, b.Body) {
				l.out.Sources = append(l.out.Sources, Source{p})
			}
		}
	}
}

// markBad records a plugin or announce block with an error of its own.
func (l *loader) markBad(name string) {
	if l.out.badPlugins == nil {
		l.out.badPlugins = map[string]bool{}
	}
	l.out.badPlugins[name] = true
}

// plugin checks what a plugin or announce block says of its binary and
// evaluates its settings.
func (l *loader) plugin(b *hcl.Block, pb pluginBody) (Plugin, bool) {
	attrs := nestedRanges(b.Body, attrRanges(b.Body))
	if pb.SHA256 != "" {
		if d, err := hex.DecodeString(pb.SHA256); err != nil || len(d) != 32 {
			l.errorf(toHCLRange(attrs.Or("sha256", toRange(b.DefRange))), "Invalid checksum",
				"sha256 must be the 64 hexadecimal digits sha256sum prints for the plugin binary, not %q.", pb.SHA256)
			return Plugin{}, false
		}
	}
	if pb.SHA256 != "" && pb.Path == "" {
		l.errorf(toHCLRange(attrs.Or("sha256", toRange(b.DefRange))), "Checksum without path",
			"sha256 checks the binary at path; a built-in plugin (no path) comes with xlbd and has none.")
		return Plugin{}, false
	}
	path := pb.Path
	if path != "" && !filepath.IsAbs(path) {
		// Absolute, so that exec runs this file and never one of the
		// same name on $PATH (filepath.Join(".", "check") is "check").
		abs, err := filepath.Abs(filepath.Join(l.dir, path))
		if err != nil {
			l.errorf(toHCLRange(attrs.Or("path", toRange(b.DefRange))), "Invalid plugin path", "%s cannot be made absolute (%v); write an absolute path.", path, err)
			return Plugin{}, false
		}
		path = abs
	}
	return Plugin{Name: b.Labels[0], Path: path, SHA256: strings.ToLower(pb.SHA256),
		Config: jsonObject(l.constants(pb.Config)), Range: toRange(b.DefRange), AttrRange: attrs}, true
}

// markUncheckable records the health_check blocks of pools and the
// announce blocks of VIPs that have an error of their own (see
// File.Checkable). It runs once every diagnostic is in.
func (l *loader) markUncheckable() {
	for _, b := range l.checks {
		if l.failedWithin(b.whole) {
			if l.out.uncheckable == nil {
				l.out.uncheckable = map[pipeline.Range]bool{}
			}
			l.out.uncheckable[toRange(b.def)] = true
		}
	}
}

// A checkBlock is a health_check or announce block, by the ranges of its
// header and of the whole block: what markUncheckable needs of it, kept
// without the syntax tree.
type checkBlock struct {
	def, whole hcl.Range
}

// checkBlocks returns the health_check blocks of pools and the announce
// blocks of vips: those a plugin checks, once the file is loaded, if they
// have no error of their own (markUncheckable).
func checkBlocks(vips, pools []*hcl.Block) []checkBlock {
	var out []checkBlock
	add := func(bs []*hcl.Block) {
		for _, b := range bs {
			out = append(out, checkBlock{b.DefRange, blockRange(b.DefRange, b.Body)})
		}
	}
	for _, p := range pools {
		add(blocksOf(p.Body, "health_check", poolSchema))
	}
	for _, v := range vips {
		add(blocksOf(v.Body, "announce", vipSchema))
	}
	return out
}

// failedIn reports whether the block with header def and body has an
// error, reported or dropped as the echo of one reported elsewhere (an
// expression referring to a variable that failed).
func (l *loader) failedIn(def hcl.Range, body hcl.Body) bool {
	return l.failedWithin(blockRange(def, body))
}

// failedWithin is failedIn for the block whose whole range is whole.
func (l *loader) failedWithin(whole hcl.Range) bool {
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

// AnnounceCheckable is Checkable for a VIP's announce block: it and its
// announcer's block have no error of their own.
func (f *File) AnnounceCheckable(a control.Announce) bool {
	return !f.uncheckable[a.Range] && !f.badPlugins[a.Announcer]
}

// nestedRanges returns ranges with the range of every item of a list,
// tuple or object written out in an attribute of body, recursively, under
// the path a plugin names it by: "neighbors[1]" for the second item of
// neighbors, "neighbors[1].peer_as" for an attribute of that item. Items
// computed by an expression (a for expression, a variable) have only the
// range of the expression that computes them.
func nestedRanges(body hcl.Body, ranges pipeline.AttrRanges) pipeline.AttrRanges {
	type item struct {
		path string
		expr hclsyntax.Expression
	}
	var stack []item
	eachAttr(body, func(name string, _ hcl.Range, expr hcl.Expression) {
		if e, ok := expr.(hclsyntax.Expression); ok {
			stack = append(stack, item{name, e})
		}
	})
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		switch e := it.expr.(type) {
		case *hclsyntax.TupleConsExpr:
			for i, x := range e.Exprs {
				p := fmt.Sprintf("%s[%d]", it.path, i)
				ranges = append(ranges, pipeline.AttrRange{Name: p, Range: toRange(x.Range())})
				stack = append(stack, item{p, x})
			}
		case *hclsyntax.ObjectConsExpr:
			for _, x := range e.Items {
				k, diags := x.KeyExpr.Value(nil)
				if diags.HasErrors() || !k.IsKnown() || k.IsNull() || k.Type() != cty.String {
					continue
				}
				p := it.path + "." + k.AsString()
				ranges = append(ranges, pipeline.AttrRange{Name: p, Range: toRange(hcl.RangeBetween(x.KeyExpr.Range(), x.ValueExpr.Range()))})
				stack = append(stack, item{p, x.ValueExpr})
			}
		}
	}
	return inOrder(ranges)
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
