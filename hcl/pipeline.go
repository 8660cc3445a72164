package hcl

import (
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/xlbproject/xlb/pipeline"
)

var pipelineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "workers"}, {Name: "connect"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "element", LabelNames: []string{"type", "name"}}},
}

// maxWorkers bounds the workers attribute: one worker per core.
const maxWorkers = 4096

// graphState is what decodePipeline learns about the declared graph to tell
// root problems from their consequences in pipeline.Build's report.
type graphState struct {
	unknownType map[string]bool // element names whose type is not registered
	tainted     map[string]bool // names whose connections are incomplete
	incomplete  bool            // some connect value could not be read at all
	endpoints   map[pipeline.Range][]int
}

func (l *loader) decodePipeline(blocks []*hcl.Block) {
	if len(blocks) == 0 {
		l.errorf(l.body.MissingItemRange(), "Missing pipeline block",
			"The file declares no pipeline block; add one with the elements and the chains that connect them (see docs/hcl.md).")
		return
	}
	for _, b := range blocks[1:] {
		l.errorf(b.DefRange, "Duplicate pipeline block",
			"A pipeline block was already declared at %s; a file has one pipeline, so merge the two.", pos(blocks[0].DefRange))
	}
	b := blocks[0]
	content, diags := b.Body.Content(pipelineSchema)
	l.diags = append(l.diags, withSchema(diags, "The pipeline block", pipelineSchema)...)
	gs := &graphState{unknownType: map[string]bool{}, tainted: map[string]bool{}, endpoints: map[pipeline.Range][]int{}}

	if a, ok := content.Attributes["workers"]; ok {
		var n int
		switch {
		case !l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &n)):
		case n < 0 || n > maxWorkers:
			l.errorf(a.Expr.Range(), "Invalid workers",
				"The pipeline cannot run %d workers; write a whole number from 0 (one per RX queue) to %d.", n, maxWorkers)
		default:
			l.out.Workers = n
		}
	}
	spec := &l.out.Spec
	for _, eb := range content.Blocks {
		d := l.decodeElement(eb)
		if _, ok := pipeline.Lookup(d.Type); !ok {
			gs.unknownType[d.Name] = true
		}
		if !validName(d.Name) {
			gs.tainted[d.Name] = true
		}
		spec.Elements = append(spec.Elements, d)
	}
	if len(spec.Elements) == 0 {
		l.errorf(b.DefRange, "Empty pipeline",
			"The pipeline block declares no element; declare at least a source (such as RxPcap) and a sink (such as TxPcap), and connect them.")
		return
	}
	if a, ok := content.Attributes["connect"]; ok {
		l.decodeConnect(a, gs)
	} else {
		l.errorf(b.Body.MissingItemRange(), "Missing connect attribute",
			`The pipeline has elements but no connect attribute; add connect = ["rx -> ... -> tx"] to join them.`)
		gs.incomplete = true
	}
	l.build(gs)
}

// decodeElement decodes one element block against its type's configuration.
func (l *loader) decodeElement(b *hcl.Block) pipeline.ElementDecl {
	d := pipeline.ElementDecl{
		Type:       b.Labels[0],
		Name:       b.Labels[1],
		Range:      toRange(b.DefRange),
		TypeRange:  toRange(b.LabelRanges[0]),
		AttrRanges: attrRanges(b.Body),
	}
	if !validName(d.Name) {
		l.errorf(b.LabelRanges[1], "Invalid element name",
			"%q cannot be used in a chain; name elements with letters, digits, underscores and inner dashes, starting with a letter (such as \"ct\" or \"rx_eth0\").", d.Name)
	}
	body := b.Body.(*hclsyntax.Body)
	typ, ok := pipeline.Lookup(d.Type)
	if !ok {
		// pipeline.Build reports the unknown type, with suggestions.
		return d
	}
	ctx, dir := l.ctx, l.dir
	el := typ.New()
	diags := configure(body, ctx, dir, el)
	d.ConfigReported = diags.HasErrors()
	l.add(inElement(diags, d.Name, typ, el))
	var mu sync.Mutex
	d.Configure = func(el pipeline.Element) error {
		mu.Lock()
		defer mu.Unlock()
		if diags := configure(body, ctx, dir, el); diags.HasErrors() {
			return diags
		}
		return nil
	}
	return d
}

// configure decodes an element body with gohcl into el, the value its
// type's New returned, and resolves its relative paths against dir.
func configure(body *hclsyntax.Body, ctx *hcl.EvalContext, dir string, el pipeline.Element) hcl.Diagnostics {
	if !isStructPtr(reflect.ValueOf(el)) {
		// A type without a configuration struct takes no attributes.
		_, diags := body.Content(&hcl.BodySchema{})
		return diags
	}
	body = withoutNulls(body, ctx, el)
	diags := gohcl.DecodeBody(body, ctx, el)
	resolvePaths(reflect.ValueOf(el).Elem(), body, dir)
	return diags
}

// schemas caches gohcl.ImpliedBodySchema by configuration type: a file may
// declare thousands of elements of a few types.
var schemas sync.Map // reflect.Type -> *hcl.BodySchema

func impliedSchema(el pipeline.Element) *hcl.BodySchema {
	t := reflect.TypeOf(el)
	if s, ok := schemas.Load(t); ok {
		return s.(*hcl.BodySchema)
	}
	s, _ := gohcl.ImpliedBodySchema(el)
	schemas.Store(t, s)
	return s
}

func isStructPtr(rv reflect.Value) bool {
	return rv.IsValid() && rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct
}

// withoutNulls returns body less the optional attributes of el that are
// null, so that null keeps the default New set, as an unset argument does
// in Terraform (gohcl would refuse null, or set a list to nil).
func withoutNulls(body *hclsyntax.Body, ctx *hcl.EvalContext, el pipeline.Element) *hclsyntax.Body {
	schema := impliedSchema(el)
	var out *hclsyntax.Body
	for _, as := range schema.Attributes {
		a, ok := body.Attributes[as.Name]
		if !ok || as.Required {
			continue
		}
		if v, diags := a.Expr.Value(ctx); diags.HasErrors() || !v.IsNull() {
			continue
		}
		if out == nil {
			b := *body
			b.Attributes = maps.Clone(body.Attributes)
			out = &b
		}
		delete(out.Attributes, as.Name)
	}
	if out == nil {
		return body
	}
	return out
}

// resolvePaths makes the string attributes named file or *_file that the
// body sets, and that are relative, relative to the configuration file's
// directory, so that a file means the same whatever directory xlbd is
// started from.
func resolvePaths(v reflect.Value, body *hclsyntax.Body, dir string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if !f.IsExported() || f.Type.Kind() != reflect.String || (name != "file" && !strings.HasSuffix(name, "_file")) {
			continue
		}
		if _, set := body.Attributes[name]; !set {
			continue
		}
		if p := v.Field(i).String(); p != "" && !filepath.IsAbs(p) {
			v.Field(i).SetString(filepath.Join(dir, p))
		}
	}
}

// inElement says which element a decoding diagnostic belongs to, and lists
// the type's attributes when one was not recognised.
func inElement(diags hcl.Diagnostics, name string, typ *pipeline.ElementType, el pipeline.Element) hcl.Diagnostics {
	var schema *hcl.BodySchema
	if isStructPtr(reflect.ValueOf(el)) {
		schema = impliedSchema(el)
	}
	for _, d := range diags {
		detail := sentence(d.Detail)
		if d.Summary == "Unsupported argument" || d.Summary == "Unsupported block type" {
			detail += " " + typ.Name + takes(schema)
		}
		d.Detail = fmt.Sprintf("In element `%s` (%s): %s", name, typ.Name, detail)
	}
	return diags
}

// decodeConnect parses the connect list into the spec's connections.
func (l *loader) decodeConnect(a *hcl.Attribute, gs *graphState) {
	type item struct {
		expr  hcl.Expression
		text  string
		plain bool
	}
	var items []item
	if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		// A list written out: each chain has its own range.
		for _, e := range tup.Exprs {
			var s string
			if !l.add(gohcl.DecodeExpression(e, l.ctx, &s)) {
				gs.incomplete = true
				continue
			}
			items = append(items, item{e, s, l.plain(e, s)})
		}
	} else {
		var list []string
		gs.incomplete = !l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &list))
		for _, s := range list {
			items = append(items, item{a.Expr, s, false})
		}
	}
	spec := &l.out.Spec
	for _, it := range items {
		ends, err := parseChain(it.text)
		if err != nil {
			l.errorf(within(it.expr, it.plain, err.start, err.end), "Invalid connection chain",
				"In %q: %s. Write chains such as \"rx -> parse -> ct\" or \"ct.miss -> sel -> ct.learn\".", it.text, err.msg)
			for _, n := range chainNames(it.text) {
				gs.tainted[n] = true
			}
			continue
		}
		for k := 0; k+1 < len(ends); k++ {
			from, to := ends[k], ends[k+1]
			c := pipeline.Connection{
				From: pipeline.Endpoint{Element: from.name, Range: toRange(within(it.expr, it.plain, from.start, from.end))},
				To:   pipeline.Endpoint{Element: to.name, Range: toRange(within(it.expr, it.plain, to.start, to.end))},
			}
			if k == 0 {
				c.From.Port = from.port
			}
			if k+2 == len(ends) {
				c.To.Port = to.port
			}
			gs.endpoints[c.From.Range] = append(gs.endpoints[c.From.Range], len(spec.Connections))
			gs.endpoints[c.To.Range] = append(gs.endpoints[c.To.Range], len(spec.Connections))
			spec.Connections = append(spec.Connections, c)
		}
	}
}

// plain reports whether expr is a plain quoted string whose source is
// exactly text, its value (no escapes, interpolation or non-ASCII), so that
// ranges inside text are ranges of the source.
func (l *loader) plain(expr hcl.Expression, text string) bool {
	r := expr.Range()
	t, ok := expr.(*hclsyntax.TemplateExpr)
	if !ok || len(t.Parts) != 1 || r.Start.Line != r.End.Line || r.End.Byte-r.Start.Byte != len(text)+2 || r.End.Byte > len(l.src) {
		return false
	}
	_, ok = t.Parts[0].(*hclsyntax.LiteralValueExpr)
	return ok && l.src[r.Start.Byte] == '"' && string(l.src[r.Start.Byte+1:r.End.Byte-1]) == text && isASCII(text)
}

// within returns the range of bytes [start, end) of the value of expr:
// tight when expr is plain, and otherwise the whole expression.
func within(expr hcl.Expression, plain bool, start, end int) hcl.Range {
	r := expr.Range()
	if !plain {
		return r
	}
	if end == start && end < r.End.Byte-r.Start.Byte-2 {
		end++
	}
	return hcl.Range{
		Filename: r.Filename,
		Start:    hcl.Pos{Line: r.Start.Line, Column: r.Start.Column + 1 + start, Byte: r.Start.Byte + 1 + start},
		End:      hcl.Pos{Line: r.Start.Line, Column: r.Start.Column + 1 + end, Byte: r.Start.Byte + 1 + end},
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// build checks the graph with pipeline.Build and reports its errors, less
// the ones that only follow from a problem already reported: an output left
// unconnected because its chain did not parse, a connection to an element
// whose type is unknown.
func (l *loader) build(gs *graphState) {
	spec := l.out.Spec
	declared := map[string]bool{}
	declRange := map[pipeline.Range]string{}
	for _, d := range spec.Elements {
		declared[d.Name] = true
		declRange[d.Range] = d.Name
	}
	for _, c := range spec.Connections {
		if !declared[c.From.Element] || gs.unknownType[c.From.Element] {
			gs.tainted[c.To.Element] = true
		}
		if !declared[c.To.Element] || gs.unknownType[c.To.Element] {
			gs.tainted[c.From.Element] = true
		}
	}
	g, errs := pipeline.Build(spec)
	for _, e := range errs {
		if e.Summary == "Unknown output port" || e.Summary == "Unknown input port" {
			for _, ci := range gs.endpoints[e.Range] {
				gs.tainted[spec.Connections[ci].From.Element] = true
				gs.tainted[spec.Connections[ci].To.Element] = true
			}
		}
	}
	var kept pipeline.Errors
	for _, e := range errs {
		switch e.Summary {
		case "Unconnected output", "Unconnected input":
			if name, ok := declRange[e.Range]; ok && (gs.incomplete || gs.tainted[name]) {
				continue
			}
		case "No source element":
			if len(gs.unknownType) > 0 {
				continue
			}
		case "Unknown element":
			if l.endpointOfUnknownType(gs, e.Range) {
				continue
			}
		}
		kept = append(kept, e)
	}
	if len(kept) == 0 && len(errs) > 0 && !l.diags.HasErrors() {
		// Nothing else explains the failure: report everything.
		kept = errs
	}
	l.diags = append(l.diags, FromErrors(kept)...)
	l.out.Graph = g
}

// endpointOfUnknownType reports whether r is an endpoint naming an element
// that is declared with an unknown type (reported at its declaration).
func (l *loader) endpointOfUnknownType(gs *graphState, r pipeline.Range) bool {
	for _, ci := range gs.endpoints[r] {
		c := l.out.Spec.Connections[ci]
		if (c.From.Range == r && gs.unknownType[c.From.Element]) || (c.To.Range == r && gs.unknownType[c.To.Element]) {
			return true
		}
	}
	return false
}
