package hcl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	hcljson "github.com/hashicorp/hcl/v2/json"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// A Fragment is a source text that contributes service blocks to a
// configuration: a file a config source watches, or the value of an etcd
// key. Its Name is how diagnostics name it (a path, or "etcd:/prefix/key"),
// so it must be unique among a load's sources.
type Fragment struct {
	Name string
	// Src is the text. It must not be modified once loaded: the File
	// keeps it for diagnostics, and a Cache compares the next load's
	// with it (the same slice at no cost).
	Src []byte
	// JSON selects HCL's JSON syntax; a Name ending in .json (such as
	// web.hcl.json) selects it too. Otherwise the text is native syntax.
	JSON bool
}

// isJSON reports whether fr is written in HCL's JSON syntax.
func (fr Fragment) isJSON() bool { return fr.JSON || strings.HasSuffix(fr.Name, ".json") }

// LoadSources loads a configuration from a main file (src, named
// filename, as Load takes it) and the fragments of any number of config
// sources, into one File. The main file holds everything a fragment may
// not: the pipeline, hash_seed, variables, locals, plugins and route
// announcers. A fragment holds vip and pool blocks only (with their
// backends, health checks and VIP announce parameters), sees the main
// file's variables and locals, and is checked with the rest as one
// configuration: a pool may be in another fragment than its VIP, and a
// name declared twice is reported at the second place, naming the first.
// MaxFileSize bounds each text and all of them together, MaxNesting each.
func LoadSources(filename string, src []byte, frags []Fragment, opts Options) (*File, hcl.Diagnostics) {
	return load(filename, src, frags, opts)
}

// fragmentSchema is what a fragment may hold, for "Unsupported block type"
// details; the rest of rootSchema is refused by name (refuseInFragment).
var fragmentSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "vip", LabelNames: []string{"name"}},
		{Type: "pool", LabelNames: []string{"name"}},
	},
}

// A fragment is a parsed fragment and, once decoded, what its blocks
// decode to.
type fragment struct {
	name    string
	file    *hcl.File
	decoded *decoded
}

// decoded is what a fragment's blocks decode to in the main file's
// context: it depends on nothing else, so a Cache keeps it while neither
// the fragment nor the main file changes.
type decoded struct {
	vips  []control.VIP
	pools []control.Pool
	// diags are the fragment's own, before control.Config.Validate.
	diags hcl.Diagnostics
	// reported are its attributes found invalid (see decodeService).
	reported map[pipeline.Range]bool
	// poison are its expressions that refer to a name that failed.
	poison spans
	// checks are its health_check and announce blocks.
	checks []checkBlock
}

// parseSources parses the fragments after the main file, on every core:
// each within the limits, and all of them with the main file within
// MaxFileSize. A fragment that is not parsed (over a limit, or named as
// another source is) is reported and left out. A fragment the cache holds
// with the same text is not parsed again. It reports whether every
// fragment parsed without error.
//
// With decode, each fragment's blocks are decoded in the main file's
// context (evaluated by then) as soon as it is parsed, by the same core,
// but for those the cache had decoded already; the cache keeps what they
// decode to. The syntax tree is dropped there and then: of a thousand
// fragments only those being decoded have one at a time, where parsing
// them all first kept every tree (hundreds of megabytes for 100,000
// backends) for the collector to mark and the kernel to fault in.
func (l *loader) parseSources(decode bool) ([]*fragment, bool) {
	before := len(l.diags)
	total := len(l.src)
	var todo []Fragment
	for _, fr := range l.frags {
		if _, dup := l.out.files[fr.Name]; dup || fr.Name == l.filename {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate configuration source",
				Detail:   fmt.Sprintf("Two sources are named %q; each file or key must be loaded once.", fr.Name),
			})
			continue
		}
		l.out.files[fr.Name] = &hcl.File{Body: hcl.EmptyBody(), Bytes: fr.Src}
		if total+len(fr.Src) > MaxFileSize && len(fr.Src) <= MaxFileSize {
			l.errorf(bytePos(fr.Src, fr.Name, hcl.InitialPos, max(MaxFileSize-total, 0)), "Configuration too large",
				"The configuration's sources together are larger than the limit of %d bytes (%d MiB) that keeps loading them within bounded time and memory; this source crosses it. Remove sources, or generate less configuration.",
				MaxFileSize, MaxFileSize>>20)
			continue
		}
		total += len(fr.Src)
		todo = append(todo, fr)
	}
	type result struct {
		frag  *fragment
		diags hcl.Diagnostics
		hit   bool // from the cache
	}
	results := make([]result, len(todo))
	parallel(len(todo), func(i int) {
		fr := todo[i]
		r := &results[i]
		if f, diags, dec, ok := l.cache.parsed(fr); ok {
			*r = result{&fragment{fr.Name, f, dec}, diags, true}
		} else {
			var parsed *hcl.File
			if fr.isJSON() {
				if r.diags = checkJSONLimits(fr.Src, fr.Name); !r.diags.HasErrors() {
					parsed, r.diags = hcljson.Parse(fr.Src, fr.Name)
				}
			} else {
				parsed, r.diags = parseConfig(fr.Src, fr.Name)
			}
			if parsed != nil {
				r.frag = &fragment{name: fr.Name, file: parsed}
			}
		}
		if decode && r.frag != nil && r.frag.decoded == nil && !r.diags.HasErrors() {
			r.frag.decoded = l.decodeFragment(r.frag.file)
		}
		if r.frag != nil && r.frag.decoded != nil {
			r.frag.file = nil
		}
	})
	var out []*fragment
	for i, r := range results {
		l.diags = append(l.diags, r.diags...)
		if r.frag == nil {
			continue
		}
		out = append(out, r.frag)
		if !r.hit {
			l.cache.keep(todo[i], r.frag.file, r.diags)
		}
		if r.frag.decoded != nil {
			l.cache.keepDecoded(r.frag.name, r.frag.decoded)
		}
	}
	return out, !l.diags[before:].HasErrors()
}

// decodeFragment decodes the vip and pool blocks of a parsed fragment, as
// the main file's would be, by a loader of its own that shares the main
// file's context: the fragment's diagnostics are those it would have
// among the others, since a fragment declares no name another sees.
func (l *loader) decodeFragment(f *hcl.File) *decoded {
	sub := l.sub()
	vips, pools := sub.fragmentBlocks(f)
	if b, ok := f.Body.(*hclsyntax.Body); ok {
		sub.native = []*hclsyntax.Body{b}
		sub.checkReferences()
		sub.markPoisonedExprs()
	}
	d := &decoded{reported: map[pipeline.Range]bool{}, checks: checkBlocks(vips, pools)}
	sub.decodeServiceBlocks(vips, pools, d.reported)
	d.vips, d.pools = sub.out.Service.VIPs, sub.out.Service.Pools
	d.diags, d.poison = sub.diags, sub.poisonRanges
	return d
}

// sub returns a loader that decodes blocks in l's context (its
// variables, locals, functions and announcers) into a File and
// diagnostics of its own.
func (l *loader) sub() *loader {
	return &loader{filename: l.filename, dir: l.dir, src: l.src, opts: l.opts,
		out: &File{Filename: l.filename}, ctx: l.ctx, announcers: l.announcers,
		vars: l.vars, varByName: l.varByName, locals: l.locals, localBy: l.localBy,
		poisoned: maps.Clone(l.poisoned)}
}

// fragmentBlocks returns the vip and pool blocks of a parsed fragment and
// refuses, where it stands, everything else.
func (l *loader) fragmentBlocks(f *hcl.File) (vips, pools []*hcl.Block) {
	content, diags := f.Body.Content(rootSchema)
	for _, d := range diags {
		if d.Summary == "Unsupported argument" || d.Summary == "Unsupported block type" {
			d.Detail = sentence(d.Detail) + " A config source's fragment" + takes(fragmentSchema)
		}
	}
	l.diags = append(l.diags, diags...)
	for name, a := range content.Attributes {
		l.errorf(a.NameRange, "Not allowed in a config source",
			"%s belongs in the main configuration file, %s: a config source's fragments hold only vip and pool blocks.", name, l.filename)
	}
	for _, b := range content.Blocks {
		switch b.Type {
		case "vip":
			vips = append(vips, b)
		case "pool":
			pools = append(pools, b)
		default:
			l.errorf(b.DefRange, "Not allowed in a config source",
				"A %s block belongs in the main configuration file, %s: a config source's fragments hold only vip and pool blocks, and see the main file's variables and locals.", b.Type, l.filename)
		}
	}
	return vips, pools
}

// checkJSONLimits is checkLimits for HCL's JSON syntax: hcl/v2/json's
// parser recurses once per level of arrays and objects, and a string is an
// HCL template, parsed by hclsyntax when it is evaluated, so the nesting of
// a string that interpolates counts on top of the string's own depth.
func checkJSONLimits(src []byte, filename string) hcl.Diagnostics {
	if len(src) > MaxFileSize {
		return checkLimits(src, filename, hcl.InitialPos)
	}
	depth := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '{', '[':
			depth++
			if depth > MaxNesting {
				return tooDeep(bytePos(src, filename, hcl.InitialPos, i))
			}
		case '}', ']':
			depth--
		case '"':
			end := i + 1
			for end < len(src) && src[end] != '"' {
				if src[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(src)-1)
			if d := templateDepth(src[i : end+1]); depth+d > MaxNesting {
				return tooDeep(bytePos(src, filename, hcl.InitialPos, i))
			}
			i = end
		}
	}
	return nil
}

// templateDepth bounds the nesting of the template a JSON string literal
// holds; 0 when it does not interpolate.
func templateDepth(lit []byte) int {
	var s string
	if !bytes.Contains(lit, []byte("{")) && !bytes.Contains(lit, []byte(`\u`)) || json.Unmarshal(lit, &s) != nil {
		return 0
	}
	if !strings.Contains(s, "${") && !strings.Contains(s, "%{") {
		return 0
	}
	tokens, _ := hclsyntax.LexTemplate([]byte(s), "", hcl.InitialPos)
	var n nesting
	deepest := 0
	for i := range tokens {
		deepest = max(deepest, n.next(tokens[i].Type, tokens[i].Bytes))
	}
	return deepest
}

// tooDeep is the diagnostic for nesting deeper than MaxNesting at r.
func tooDeep(r hcl.Range) hcl.Diagnostics {
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Expression nested too deeply",
		Detail: fmt.Sprintf("The nesting here goes deeper than %d levels (brackets, quotes, interpolations, template directives and chains of operators each add one), too deep to parse safely; split the expression into locals.",
			MaxNesting),
		Subject: r.Ptr(),
	}}
}

// attr returns the expression and whole range of body's attribute name,
// and whether it is set. Native syntax keeps its attributes; a JSON body's
// properties are attributes or blocks as a schema reads them.
func attr(body hcl.Body, name string) (hcl.Expression, hcl.Range, bool) {
	if b, ok := body.(*hclsyntax.Body); ok {
		if a, ok := b.Attributes[name]; ok {
			return a.Expr, a.SrcRange, true
		}
		return nil, hcl.Range{}, false
	}
	content, _, _ := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	if a, ok := content.Attributes[name]; ok {
		return a.Expr, a.Range, true
	}
	return nil, hcl.Range{}, false
}

// eachAttr calls f with every attribute of body (in JSON syntax, every
// property), its whole range and its expression.
func eachAttr(body hcl.Body, f func(name string, r hcl.Range, expr hcl.Expression)) {
	if b, ok := body.(*hclsyntax.Body); ok {
		for name, a := range b.Attributes {
			f(name, a.SrcRange, a.Expr)
		}
		return
	}
	attrs, _ := body.JustAttributes()
	for name, a := range attrs {
		f(name, a.Range, a.Expr)
	}
}

// blocksOf returns body's blocks of type typ, well-formed as schema (which
// lists typ) says.
func blocksOf(body hcl.Body, typ string, schema *hcl.BodySchema) []*hcl.Block {
	var out []*hcl.Block
	if b, ok := body.(*hclsyntax.Body); ok {
		labels := 0
		for _, s := range schema.Blocks {
			if s.Type == typ {
				labels = len(s.LabelNames)
			}
		}
		for _, bb := range b.Blocks {
			if bb.Type == typ && len(bb.Labels) == labels {
				out = append(out, bb.AsHCLBlock())
			}
		}
		return out
	}
	content, _, _ := body.PartialContent(schema)
	for _, bb := range content.Blocks {
		if bb.Type == typ {
			out = append(out, bb)
		}
	}
	return out
}

// content is body.Content(schema), made without PartialContent's maps of
// hidden names and with the blocks allocated at once, when body is native
// syntax as parsed and holds only what schema takes, so that Content would
// report nothing: a pool's hundreds of backends, a file's thousands of
// pools.
func content(body hcl.Body, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	b, ok := body.(*hclsyntax.Body)
	if !ok || len(b.Attributes) > len(schema.Attributes) {
		return body.Content(schema)
	}
	for name := range b.Attributes {
		if !slices.ContainsFunc(schema.Attributes, func(a hcl.AttributeSchema) bool { return a.Name == name }) {
			return body.Content(schema)
		}
	}
	for _, blk := range b.Blocks {
		i := slices.IndexFunc(schema.Blocks, func(s hcl.BlockHeaderSchema) bool { return s.Type == blk.Type })
		if i < 0 || len(schema.Blocks[i].LabelNames) != len(blk.Labels) {
			return body.Content(schema)
		}
	}
	out := &hcl.BodyContent{Attributes: make(hcl.Attributes, len(b.Attributes)), MissingItemRange: b.MissingItemRange()}
	for _, a := range schema.Attributes {
		attr, ok := b.Attributes[a.Name]
		switch {
		case ok:
			out.Attributes[a.Name] = attr.AsHCLAttribute()
		case a.Required:
			return body.Content(schema)
		}
	}
	if len(b.Blocks) > 0 {
		blocks := make([]hcl.Block, len(b.Blocks))
		out.Blocks = make(hcl.Blocks, len(b.Blocks))
		for i, blk := range b.Blocks {
			blocks[i] = hcl.Block{Type: blk.Type, Labels: blk.Labels, Body: blk.Body,
				DefRange: blk.DefRange(), TypeRange: blk.TypeRange, LabelRanges: blk.LabelRanges}
			out.Blocks[i] = &blocks[i]
		}
	}
	return out, nil
}

// blockRange returns the whole range of a block with header def and body.
func blockRange(def hcl.Range, body hcl.Body) hcl.Range {
	if b, ok := body.(*hclsyntax.Body); ok {
		return hcl.RangeBetween(def, b.SrcRange)
	}
	whole := def
	eachAttr(body, func(_ string, r hcl.Range, _ hcl.Expression) {
		if r.Filename == whole.Filename && r.End.Byte > whole.End.Byte {
			whole = hcl.RangeBetween(whole, r)
		}
	})
	return whole
}

// visitAll walks every body as hclsyntax.VisitAll walks one, but for the
// Attributes and Blocks collections, which it does not pass to f: without
// VisitAll's closure and diagnostics for every node of a configuration's
// hundreds of thousands.
func visitAll(bodies []*hclsyntax.Body, f hclsyntax.VisitFunc) {
	for _, b := range bodies {
		visitBody(b, f)
	}
}

func visitBody(b *hclsyntax.Body, f hclsyntax.VisitFunc) {
	f(b)
	for _, a := range b.Attributes {
		f(a)
		visitExpr(a.Expr, f)
	}
	for _, blk := range b.Blocks {
		f(blk)
		visitBody(blk.Body, f)
	}
}

// visitExpr walks e as hclsyntax.VisitAll does, itself through the
// expressions literal configurations are made of.
func visitExpr(e hclsyntax.Expression, f hclsyntax.VisitFunc) {
	switch e := e.(type) {
	case *hclsyntax.LiteralValueExpr, *hclsyntax.ScopeTraversalExpr:
		f(e)
	case *hclsyntax.TemplateExpr:
		f(e)
		for _, p := range e.Parts {
			visitExpr(p, f)
		}
	case *hclsyntax.TupleConsExpr:
		f(e)
		for _, x := range e.Exprs {
			visitExpr(x, f)
		}
	default:
		hclsyntax.VisitAll(e, f)
	}
}
