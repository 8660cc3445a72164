// Package hcl loads xlbd's configuration file: the packet pipeline (element
// instances and the chains that connect them) and the service model (VIPs,
// pools, backends), written in HCL native syntax
// (https://github.com/hashicorp/hcl/blob/main/hclsyntax/spec.md) with
// Terraform-style variables, locals and functions.
//
// Every problem is returned as an hcl.Diagnostic with a tight source range,
// all of them at once: each element body is decoded with gohcl against its
// own type's configuration struct, the graph is checked by pipeline.Build and the
// service by control.Config.Validate even when earlier parts failed, and
// diagnostics that would only repeat an earlier one (a reference to a
// variable that failed, an output left unconnected because its chain did not
// parse) are suppressed. docs/hcl.md is the reference for the file format.
package hcl

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// Options are the inputs to a load that do not come from the file.
type Options struct {
	// Vars are values for the file's variable blocks by name, as given on
	// the command line (-var name=value). A value is parsed as an HCL
	// expression when the variable's type is not a primitive and when it has
	// no type and parses as a constant (42, true, ["a"]); otherwise it is
	// taken as a literal string, as Terraform does for -var.
	Vars map[string]string
	// EnvVars are values from XLB_VAR_name environment variables. They
	// yield to Vars, and names the file does not declare are ignored (an
	// environment may serve several files), where in Vars they are errors.
	EnvVars map[string]string
	// SourcesOnly loads the main file's source blocks only (with the
	// variables and locals they may use): what xlbd needs to start the
	// config sources, before their fragments are known and the file can
	// be checked as a whole (its VIPs may use pools that live in etcd).
	SourcesOnly bool
}

// File is a loaded configuration file.
type File struct {
	Filename string
	// Workers is the pipeline's workers attribute; 0 means the daemon picks
	// (one per RX queue).
	Workers int
	// Spec is the pipeline as declared, also when it has errors.
	Spec pipeline.Spec
	// Graph is the checked pipeline; nil when the file has any error.
	Graph *pipeline.Graph
	// Service is the decoded service configuration (validated as a whole).
	Service control.Config
	// HashSeedRange is where hash_seed is set; zero when it is not.
	HashSeedRange pipeline.Range
	// Plugins are the plugin blocks: where the binary serving a
	// health-check method (by name) is, and its expected SHA-256.
	Plugins []Plugin
	// Announcers are the announce blocks: the route announcers, each of
	// which announces every VIP that should be announced.
	Announcers []Announcer
	// Sources are the source blocks: the config-source plugins whose
	// documents add VIPs and pools (LoadSources).
	Sources []Source

	files map[string]*hcl.File
	// uncheckable and badPlugins are the health_check and VIP announce
	// blocks (by header) and plugin and announce blocks (by name) with
	// errors of their own: Checkable, AnnounceCheckable.
	uncheckable map[pipeline.Range]bool
	badPlugins  map[string]bool
}

// Files returns the source files by name, as WriteDiagnostics and
// hcl.NewDiagnosticTextWriter want them for printing diagnostics with
// source snippets: their texts, with empty bodies and no Nav (so such a
// writer prints no "in block" context; WriteDiagnostics needs none).
func (f *File) Files() map[string]*hcl.File { return f.files }

// LoadFile reads and loads the configuration file at path. Relative paths in
// the file (element `file` attributes) are resolved against path's directory.
func LoadFile(path string, opts Options) (*File, hcl.Diagnostics) {
	src, err := readFile(path)
	if err != nil {
		return &File{Filename: path, files: map[string]*hcl.File{}}, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration file",
			Detail:   fmt.Sprintf("%s; check the path and its permissions.", err),
		}}
	}
	return Load(path, src, opts)
}

// readFile reads the file at path, but no more than one byte over
// MaxFileSize: enough for Load to refuse it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, MaxFileSize+1))
}

// Load loads a configuration from src; filename names it in diagnostics and
// its directory anchors relative paths. The returned File is never nil; its
// Graph is nil when the diagnostics have errors. Warnings (such as a missing
// hash_seed) may come with a usable File.
func Load(filename string, src []byte, opts Options) (*File, hcl.Diagnostics) {
	return load(filename, src, nil, opts)
}

func load(filename string, src []byte, frags []Fragment, opts Options) (*File, hcl.Diagnostics) {
	return loadWith(nil, filename, src, frags, opts)
}

// loadWith is load, taking from cache (when not nil) what it kept of
// unchanged fragments, and leaving there what it makes of them.
func loadWith(cache *Cache, filename string, src []byte, frags []Fragment, opts Options) (*File, hcl.Diagnostics) {
	l := &loader{
		cache:    cache,
		filename: filename,
		dir:      filepath.Dir(filename),
		src:      src,
		frags:    frags,
		opts:     opts,
		out:      &File{Filename: filename, files: map[string]*hcl.File{}},
		poisoned: map[string]bool{},
	}
	l.load()
	// The syntax trees are done with: a File keeps its sources' texts,
	// for diagnostics, and not hundreds of megabytes of nodes that the
	// collector would mark at every cycle while the file runs.
	for name, f := range l.out.files {
		l.out.files[name] = &hcl.File{Body: hcl.EmptyBody(), Bytes: f.Bytes}
	}
	sortDiags(l.diags)
	if l.diags.HasErrors() {
		l.out.Graph = nil
	}
	return l.out, l.diags
}

// loader holds the state of one Load.
type loader struct {
	filename, dir string
	src           []byte
	frags         []Fragment
	opts          Options
	out           *File
	diags         hcl.Diagnostics
	// cache keeps what fragments parse and decode to, from one load to
	// the next; nil: none.
	cache *Cache
	// announcers are the names of the announce blocks, sorted.
	announcers []string

	body *hclsyntax.Body
	// native are the bodies in native syntax, the main file's first,
	// whose references are checked before evaluation.
	native []*hclsyntax.Body
	ctx    *hcl.EvalContext
	// vips and pools are the service blocks of the main file; checks the
	// health_check and announce blocks of every source.
	vips, pools []*hcl.Block
	checks      []checkBlock

	vars      []*variable
	varByName map[string]*variable
	locals    []*local
	localBy   map[string]*local

	// poisoned holds "var.x" and "local.y" for every name whose value could
	// not be computed (and was reported); poisonRanges are the expressions
	// that refer to one. Diagnostics inside them are echoes of the first
	// report and are dropped.
	poisoned     map[string]bool
	poisonRanges spans
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "hash_seed"}, {Name: "shard_names"}, {Name: "shards"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "pipeline"},
		{Type: "vip", LabelNames: []string{"name"}},
		{Type: "pool", LabelNames: []string{"name"}},
		{Type: "plugin", LabelNames: []string{"name"}},
		{Type: "announce", LabelNames: []string{"name"}},
		{Type: "source", LabelNames: []string{"name"}},
	},
}

func (l *loader) load() {
	f, diags := parseConfig(l.src, l.filename)
	if f == nil {
		// Over the limits: not parsed, but kept for the diagnostic's
		// source line.
		f = &hcl.File{Body: hcl.EmptyBody(), Bytes: l.src}
	}
	l.out.files[l.filename] = f
	l.diags = append(l.diags, diags...)
	if l.diags.HasErrors() {
		// The syntax tree is partial: anything else would be guesswork.
		// The fragments are parsed for their own syntax errors.
		l.parseSources(false)
		return
	}
	parsed := len(l.diags)
	l.body = f.Body.(*hclsyntax.Body)
	l.native = append(l.native, l.body)
	content, diags := content(l.body, rootSchema)
	l.diags = append(l.diags, withSchema(diags, "The top level", rootSchema)...)

	var pipelines, plugins, announcers, sources []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			l.declareVariable(b)
		case "locals":
			l.declareLocals(b)
		case "pipeline":
			pipelines = append(pipelines, b)
		case "vip":
			l.vips = append(l.vips, b)
		case "pool":
			l.pools = append(l.pools, b)
		case "plugin":
			plugins = append(plugins, b)
		case "announce":
			announcers = append(announcers, b)
		case "source":
			sources = append(sources, b)
		}
	}
	// The main file is evaluated first, alone: fragments see its
	// variables and locals and have none of their own, so a name a
	// fragment gets wrong is reported there and poisons nothing here.
	l.checkReferences()
	l.evalVariables()
	l.evalLocals()
	l.ctx = l.evalContext()
	l.markPoisonedExprs()
	l.decodeSources(sources, plugins, announcers)
	l.announcers = announcerNames(announcers)
	evaluated := len(l.diags)
	frags, ok := l.parseSources(!l.opts.SourcesOnly)
	if !ok {
		// A fragment's syntax tree is partial: as for the main file's,
		// only the syntax errors are reported, and nothing decoded is
		// returned.
		l.diags = append(l.diags[:parsed:parsed], l.diags[evaluated:]...)
		*l.out = File{Filename: l.filename, files: l.out.files}
		return
	}
	if l.opts.SourcesOnly {
		return
	}

	l.decodeHashSeed(content.Attributes["hash_seed"])
	l.decodeShards(content.Attributes["shard_names"])
	l.decodePipeline(pipelines)
	l.decodeService(l.vips, l.pools, frags)
	l.decodePlugins(plugins)
	l.decodeAnnouncers(announcers, plugins)
	l.markUncheckable()
	l.checkBackends()
	l.checkSnapshot()
}

// evalContext returns the context expressions are evaluated in: var.NAME,
// local.NAME (unknown while not yet or not computable) and the functions.
func (l *loader) evalContext() *hcl.EvalContext {
	vars := make(map[string]cty.Value, len(l.vars))
	for _, v := range l.vars {
		vars[v.name] = v.value
	}
	locals := make(map[string]cty.Value, len(l.locals))
	for _, lc := range l.locals {
		locals[lc.name] = lc.value
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(locals)},
		Functions: stdFunctions,
	}
}

// add appends diagnostics that came from evaluating and decoding user
// expressions, less the echoes: those inside an expression that refers to a
// poisoned name, and gohcl's "Unsuitable value type" for the unknown value
// an expression has when its evaluation failed with an error already in
// diags. It reports whether no error remained or was dropped.
func (l *loader) add(diags hcl.Diagnostics) bool {
	ok := true
	var errs []*hcl.Diagnostic // sorted by subject, once needed
	for _, d := range diags {
		if d.Subject != nil && l.poisonRanges.containing(*d.Subject) >= 0 || failedBefore(d, diags, &errs) {
			ok = false
			continue
		}
		if d.Severity == hcl.DiagError {
			ok = false
		}
		d.Detail = sentence(d.Detail)
		l.diags = append(l.diags, d)
	}
	return ok
}

// failedBefore reports whether d is an "Unsuitable value type" whose
// expression holds another error of diags. errs caches diags' errors
// sorted by subject, so that a long list of diagnostics is searched in
// log time.
func failedBefore(d *hcl.Diagnostic, diags hcl.Diagnostics, errs *[]*hcl.Diagnostic) bool {
	if d.Summary != "Unsuitable value type" || d.Context == nil {
		return false
	}
	if *errs == nil {
		*errs = []*hcl.Diagnostic{}
		for _, e := range diags {
			if e.Severity == hcl.DiagError && e.Subject != nil {
				*errs = append(*errs, e)
			}
		}
		slices.SortFunc(*errs, func(a, b *hcl.Diagnostic) int { return cmp.Compare(a.Subject.Start.Byte, b.Subject.Start.Byte) })
	}
	c := *d.Context
	es := *errs
	i, _ := slices.BinarySearchFunc(es, c.Start.Byte, func(e *hcl.Diagnostic, b int) int { return cmp.Compare(e.Subject.Start.Byte, b) })
	for ; i < len(es) && es[i].Subject.Start.Byte <= c.End.Byte; i++ {
		if es[i] != d && contains(c, *es[i].Subject) {
			return true
		}
	}
	return false
}

// spans are disjoint source ranges, sorted by file and start.
type spans []hcl.Range

func sortSpans(s spans) {
	slices.SortFunc(s, func(a, b hcl.Range) int {
		return cmp.Or(strings.Compare(a.Filename, b.Filename), cmp.Compare(a.Start.Byte, b.Start.Byte))
	})
}

// containing returns the index of the span that contains r, or -1.
func (s spans) containing(r hcl.Range) int {
	i, found := slices.BinarySearchFunc(s, r, func(x, r hcl.Range) int {
		return cmp.Or(strings.Compare(x.Filename, r.Filename), cmp.Compare(x.Start.Byte, r.Start.Byte))
	})
	if !found {
		i--
	}
	if i >= 0 && contains(s[i], r) {
		return i
	}
	return -1
}

// contains reports whether range outer contains range inner.
func contains(outer, inner hcl.Range) bool {
	return outer.Filename == inner.Filename && outer.Start.Byte <= inner.Start.Byte && inner.End.Byte <= outer.End.Byte
}

// sentence ends s with a full stop, as gohcl's "Unsuitable value: ..."
// details lack one.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "?") {
		return s
	}
	return s + "."
}

// errorf appends one error diagnostic.
func (l *loader) errorf(subject hcl.Range, summary, format string, args ...any) {
	l.diags = append(l.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

// FromErrors converts pipeline errors (from pipeline.Build and
// control.Config.Validate) to diagnostics.
func FromErrors(errs pipeline.Errors) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, e := range errs {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: e.Summary, Detail: e.Detail}
		if e.Range != (pipeline.Range{}) {
			r := toHCLRange(e.Range)
			d.Subject = &r
		}
		diags = append(diags, d)
	}
	return diags
}

// pos formats where r starts as file:line:col, for "declared at" details.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func toHCLRange(r pipeline.Range) hcl.Range {
	return hcl.Range{
		Filename: r.Filename,
		Start:    hcl.Pos{Line: r.Start.Line, Column: r.Start.Column, Byte: r.Start.Byte},
		End:      hcl.Pos{Line: r.End.Line, Column: r.End.Column, Byte: r.End.Byte},
	}
}

func toRange(r hcl.Range) pipeline.Range {
	return pipeline.Range{
		Filename: r.Filename,
		Start:    pipeline.Pos{Line: r.Start.Line, Column: r.Start.Column, Byte: r.Start.Byte},
		End:      pipeline.Pos{Line: r.End.Line, Column: r.End.Column, Byte: r.End.Byte},
	}
}

// sortDiags orders diagnostics by position, those without a source first,
// keeping the order of equal positions.
func sortDiags(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
