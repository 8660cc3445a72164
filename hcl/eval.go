package hcl

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/xlbproject/xlb/pipeline"
)

// variable is one variable block.
type variable struct {
	name  string
	block *hcl.Block
	attrs hcl.Attributes
	value cty.Value
}

// local is one attribute of a locals block.
type local struct {
	name   string
	attr   *hcl.Attribute
	deps   []*local
	cyclic bool
	value  cty.Value
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "default"}, {Name: "description"}, {Name: "type"}},
}

func (l *loader) declareVariable(b *hcl.Block) {
	name := b.Labels[0]
	content, diags := b.Body.Content(variableSchema)
	l.diags = append(l.diags, diags...)
	if !hclsyntax.ValidIdentifier(name) {
		l.errorf(b.LabelRanges[0], "Invalid variable name",
			"%q is not a valid name: use letters, digits, underscores and dashes, starting with a letter.", name)
		return
	}
	if prev, dup := l.varByName[name]; dup {
		l.errorf(b.LabelRanges[0], "Duplicate variable",
			"A variable named %q was already declared at %s; remove one of them or rename it.", name, pos(prev.block.DefRange))
		return
	}
	if l.varByName == nil {
		l.varByName = map[string]*variable{}
	}
	v := &variable{name: name, block: b, attrs: content.Attributes, value: cty.DynamicVal}
	if a, ok := content.Attributes["description"]; ok {
		var s string
		l.add(gohcl.DecodeExpression(a.Expr, nil, &s))
	}
	l.vars = append(l.vars, v)
	l.varByName[name] = v
}

func (l *loader) declareLocals(b *hcl.Block) {
	attrs, diags := b.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	for _, a := range sortedAttrs(attrs) {
		if prev, dup := l.localBy[a.Name]; dup {
			l.errorf(a.NameRange, "Duplicate local value",
				"A local value named %q was already defined at %s; remove one of them or rename it.", a.Name, pos(prev.attr.NameRange))
			continue
		}
		if l.localBy == nil {
			l.localBy = map[string]*local{}
		}
		lc := &local{name: a.Name, attr: a, value: cty.DynamicVal}
		l.locals = append(l.locals, lc)
		l.localBy[a.Name] = lc
	}
}

// checkReferences reports every var.x and local.y in the file that names
// nothing declared, before anything is evaluated, and poisons the name so
// that evaluation does not report it again.
func (l *loader) checkReferences() {
	// A misspelt name may be used thousands of times: look for what it
	// could mean once.
	suggestions := map[string]string{}
	suggest := func(ref, name string, names func() []string) string {
		s, ok := suggestions[ref]
		if !ok {
			s = pipeline.Suggest(name, names())
			suggestions[ref] = s
		}
		return s
	}
	visitAll(l.native, func(n hclsyntax.Node) hcl.Diagnostics {
		e, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			return nil
		}
		root, name, r, ok := refName(e.Traversal)
		if !ok {
			return nil
		}
		switch root {
		case "var":
			if _, ok := l.varByName[name]; !ok {
				names := func() []string {
					names := make([]string, len(l.vars))
					for i, v := range l.vars {
						names[i] = v.name
					}
					return names
				}
				l.errorf(r, "Unknown variable",
					"No variable named %q is declared%s; declare it with a variable block or fix the name.", name, suggest("var."+name, name, names))
				l.poisoned["var."+name] = true
			}
		case "local":
			if _, ok := l.localBy[name]; !ok {
				names := func() []string {
					names := make([]string, len(l.locals))
					for i, lc := range l.locals {
						names[i] = lc.name
					}
					return names
				}
				l.errorf(r, "Unknown local value",
					"No local value named %q is defined%s; define it in a locals block or fix the name.", name, suggest("local."+name, name, names))
				l.poisoned["local."+name] = true
			}
		}
		return nil
	})
}

// refName returns the root ("var" or "local"), the name and the range of
// a traversal such as var.seed or local["w"].
func refName(t hcl.Traversal) (root, name string, r hcl.Range, ok bool) {
	if len(t) < 2 || t.IsRelative() {
		return "", "", hcl.Range{}, false
	}
	root = t.RootName()
	if root != "var" && root != "local" {
		return "", "", hcl.Range{}, false
	}
	switch s := t[1].(type) {
	case hcl.TraverseAttr:
		name = s.Name
	case hcl.TraverseIndex:
		if s.Key.Type() != cty.String || !s.Key.IsKnown() || s.Key.IsNull() {
			return "", "", hcl.Range{}, false
		}
		name = s.Key.AsString()
	default:
		return "", "", hcl.Range{}, false
	}
	return root, name, hcl.RangeBetween(t[0].SourceRange(), t[1].SourceRange()), true
}

// evalVariables sets every variable's value from Options.Vars or its
// default, converted to its type.
func (l *loader) evalVariables() {
	for _, name := range sortedKeys(l.opts.Vars) {
		if _, ok := l.varByName[name]; !ok {
			l.diags = append(l.diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Unknown variable",
				Detail: fmt.Sprintf("A value was given for variable %q with -var, but %s declares no such variable; declare it with a variable block or drop the value.",
					name, l.filename),
			})
		}
	}
	for _, v := range l.vars {
		if !l.evalVariable(v) {
			v.value = cty.DynamicVal
			l.poisoned["var."+v.name] = true
		}
	}
}

func (l *loader) evalVariable(v *variable) bool {
	ty := cty.DynamicPseudoType
	if a, ok := v.attrs["type"]; ok {
		t, diags := typeexpr.TypeConstraint(a.Expr)
		if !l.add(diags) {
			return false
		}
		ty = t
	}
	raw, ok := l.opts.Vars[v.name]
	if !ok {
		raw, ok = l.opts.EnvVars[v.name]
	}
	if ok {
		val, err := parseVarValue(raw, ty)
		if err == nil {
			val, err = convert.Convert(val, ty)
		}
		if err != nil {
			l.errorf(v.block.DefRange, "Invalid value for variable",
				"The value given for variable %q is not valid: %s; pass a value of type %s.", v.name, err, typeexpr.TypeString(ty))
			return false
		}
		v.value = val
		return true
	}
	a, ok := v.attrs["default"]
	if !ok {
		l.errorf(v.block.DefRange, "Missing variable value",
			"Variable %q has no default and no value was given; pass -var %s=VALUE, set XLB_VAR_%s, or add a default.", v.name, v.name, v.name)
		return false
	}
	val, diags := a.Expr.Value(nil)
	if !l.add(diags) {
		return false
	}
	val, err := convert.Convert(val, ty)
	if err != nil {
		l.errorf(a.Expr.Range(), "Invalid default value",
			"The default of variable %q is not valid: %s; give a value of type %s.", v.name, err, typeexpr.TypeString(ty))
		return false
	}
	v.value = val
	return true
}

// parseVarValue interprets a value given outside the file. As Terraform's
// -var: a primitive type takes the text literally; other types parse it as
// an HCL expression. Without a type, a constant expression (42, true,
// ["a", "b"]) is taken as such and anything else as a string.
func parseVarValue(raw string, ty cty.Type) (cty.Value, error) {
	if ty.IsPrimitiveType() {
		return cty.StringVal(raw), nil
	}
	if diags := checkLimits([]byte(raw), "<value>", hcl.InitialPos); diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("%s: %s", diags[0].Summary, strings.TrimSuffix(diags[0].Detail, "."))
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), "<value>", hcl.InitialPos)
	if !diags.HasErrors() && len(expr.Variables()) == 0 {
		v, diags := expr.Value(nil)
		if !diags.HasErrors() {
			return v, nil
		}
	}
	if ty == cty.DynamicPseudoType {
		return cty.StringVal(raw), nil
	}
	if diags.HasErrors() {
		return cty.NilVal, fmt.Errorf("%s", diags[0].Summary)
	}
	return cty.NilVal, fmt.Errorf("it must be a constant expression")
}

// evalLocals evaluates the locals in dependency order and reports cycles.
// The depth-first search keeps its own stack: a chain of locals can be as
// long as the file.
func (l *loader) evalLocals() {
	for _, lc := range l.locals {
		for _, t := range lc.attr.Expr.Variables() {
			if root, name, _, ok := refName(t); ok && root == "local" {
				if d, ok := l.localBy[name]; ok {
					lc.deps = append(lc.deps, d)
				}
			}
		}
	}
	type entry struct {
		lc   *local
		next int // the next of lc.deps to visit
	}
	onStack := map[*local]int{} // the place on the stack of each local on it
	done := map[*local]bool{}
	var stack []entry
	for _, root := range l.locals {
		if done[root] {
			continue
		}
		onStack[root] = 0
		stack = append(stack[:0], entry{root, 0})
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.next == len(top.lc.deps) {
				delete(onStack, top.lc)
				done[top.lc] = true
				l.evalLocal(top.lc)
				stack = stack[:len(stack)-1]
				continue
			}
			d := top.lc.deps[top.next]
			top.next++
			if i, ok := onStack[d]; ok {
				cycle := make([]*local, 0, len(stack)-i)
				for _, e := range stack[i:] {
					cycle = append(cycle, e.lc)
				}
				l.reportCycle(cycle)
			} else if !done[d] {
				onStack[d] = len(stack)
				stack = append(stack, entry{d, 0})
			}
		}
	}
}

func (l *loader) reportCycle(cycle []*local) {
	first := 0
	names := make([]string, len(cycle))
	for i, lc := range cycle {
		lc.cyclic = true
		names[i] = "local." + lc.name
		if lc.attr.NameRange.Start.Byte < cycle[first].attr.NameRange.Start.Byte {
			first = i
		}
	}
	// Start the loop at the first one in the file, where it is reported.
	names = append(names[first:], names[:first]...)
	l.errorf(cycle[first].attr.NameRange, "Cycle in local values",
		"These local values refer to each other in a loop: %s -> %s; break the loop so that each can be computed from the others.",
		strings.Join(names, " -> "), names[0])
}

func (l *loader) evalLocal(lc *local) {
	poison := func() {
		lc.value = cty.DynamicVal
		l.poisoned["local."+lc.name] = true
	}
	if lc.cyclic {
		poison()
		return
	}
	for _, t := range lc.attr.Expr.Variables() {
		if root, name, _, ok := refName(t); ok && l.poisoned[root+"."+name] {
			poison()
			return
		}
	}
	v, diags := lc.attr.Expr.Value(l.scope(lc.attr.Expr.Variables()))
	if !l.add(diags) {
		poison()
		return
	}
	switch known, depth := valueDepth(v); {
	case !known:
		poison()
		return
	case depth > MaxNesting:
		// Each local may nest the ones it refers to: a chain of them
		// would build values too deep for the recursive walks of go-cty
		// and gohcl.
		l.errorf(lc.attr.NameRange, "Value nested too deeply",
			"local.%s nests lists, maps or objects deeper than %d levels, through the local values it refers to; flatten the values.", lc.name, MaxNesting)
		poison()
		return
	}
	lc.value = v
}

// scope returns the context to evaluate an expression that refers to
// traversals in: the variables and locals it names, with their values so
// far, and the functions. Only those it names: the whole var and local
// objects, rebuilt for each of thousands of locals, made evaluation
// quadratic.
func (l *loader) scope(traversals []hcl.Traversal) *hcl.EvalContext {
	vars, locals := map[string]cty.Value{}, map[string]cty.Value{}
	for _, t := range traversals {
		root, name, _, ok := refName(t)
		switch {
		case !ok && (t.RootName() == "var" || t.RootName() == "local"):
			// The whole object, or a name computed by an expression.
			return l.evalContext()
		case root == "var":
			if v, ok := l.varByName[name]; ok {
				vars[name] = v.value
			}
		case root == "local":
			if lc, ok := l.localBy[name]; ok {
				locals[name] = lc.value
			}
		}
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "local": cty.ObjectVal(locals)},
		Functions: stdFunctions,
	}
}

// valueDepth reports whether v is wholly known and how deeply its lists,
// maps and objects nest, up to MaxNesting+1. It walks v with its own
// stack, since v may be deeper than a recursive walk could go.
func valueDepth(v cty.Value) (known bool, depth int) {
	type entry struct {
		v     cty.Value
		depth int
	}
	stack := []entry{{v, 0}}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !e.v.IsKnown() {
			return false, depth
		}
		depth = max(depth, e.depth)
		if depth > MaxNesting {
			return true, depth
		}
		if e.v.IsNull() || !e.v.CanIterateElements() {
			continue
		}
		for it := e.v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			stack = append(stack, entry{ev, e.depth + 1})
		}
	}
	return true, depth
}

// markPoisonedExprs records every attribute expression that refers to a
// name whose value failed, so that diagnostics inside it are dropped.
func (l *loader) markPoisonedExprs() {
	if len(l.poisoned) == 0 {
		return
	}
	visitAll(l.native, func(n hclsyntax.Node) hcl.Diagnostics {
		a, ok := n.(*hclsyntax.Attribute)
		if !ok {
			return nil
		}
		// The items of a list written out (connect) stand on their own.
		exprs := []hclsyntax.Expression{a.Expr}
		if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
			exprs = tup.Exprs
		}
		for _, e := range exprs {
			for _, t := range e.Variables() {
				if root, name, _, ok := refName(t); ok && l.poisoned[root+"."+name] {
					l.poisonRanges = append(l.poisonRanges, e.Range())
					break
				}
			}
		}
		return nil
	})
	sortSpans(l.poisonRanges)
}

// stdFunctions are the functions, made once: function.Function values do
// not change.
var stdFunctions = functions()

// functions are the functions available in expressions: go-cty's standard
// library under Terraform's names, and default_graph. Functions that read
// files or the clock are left out so that a file means the same on every
// node.
func functions() map[string]function.Function {
	return map[string]function.Function{
		"abs":             stdlib.AbsoluteFunc,
		"ceil":            stdlib.CeilFunc,
		"chomp":           stdlib.ChompFunc,
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"csvdecode":       stdlib.CSVDecodeFunc,
		"default_graph":   defaultGraphFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"floor":           stdlib.FloorFunc,
		"format":          stdlib.FormatFunc,
		"formatlist":      stdlib.FormatListFunc,
		"indent":          stdlib.IndentFunc,
		"index":           stdlib.IndexFunc,
		"join":            stdlib.JoinFunc,
		"jsondecode":      jsonDecode,
		"jsonencode":      stdlib.JSONEncodeFunc,
		"keys":            stdlib.KeysFunc,
		"length":          stdlib.LengthFunc,
		"log":             stdlib.LogFunc,
		"lookup":          stdlib.LookupFunc,
		"lower":           stdlib.LowerFunc,
		"max":             stdlib.MaxFunc,
		"merge":           stdlib.MergeFunc,
		"min":             stdlib.MinFunc,
		"parseint":        stdlib.ParseIntFunc,
		"pow":             stdlib.PowFunc,
		"range":           stdlib.RangeFunc,
		"regex":           stdlib.RegexFunc,
		"regexall":        stdlib.RegexAllFunc,
		"replace":         stdlib.ReplaceFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"signum":          stdlib.SignumFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"split":           stdlib.SplitFunc,
		"strrev":          stdlib.ReverseFunc,
		"substr":          stdlib.SubstrFunc,
		"title":           stdlib.TitleFunc,
		"tobool":          stdlib.MakeToFunc(cty.Bool),
		"tolist":          stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":           stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":        stdlib.MakeToFunc(cty.Number),
		"toset":           stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":        stdlib.MakeToFunc(cty.String),
		"trim":            stdlib.TrimFunc,
		"trimprefix":      stdlib.TrimPrefixFunc,
		"trimspace":       stdlib.TrimSpaceFunc,
		"trimsuffix":      stdlib.TrimSuffixFunc,
		"upper":           stdlib.UpperFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,
	}
}

// jsonDecode is go-cty's jsondecode, refusing a document nested deeper than
// MaxNesting: go-cty decodes one by recursion, and a string in the file can
// hold millions of brackets that the limits on the file's own nesting do
// not see.
var jsonDecode = function.New(&function.Spec{
	Description: stdlib.JSONDecodeFunc.Description(),
	Params:      stdlib.JSONDecodeFunc.Params(),
	Type: func(args []cty.Value) (cty.Type, error) {
		if s := args[0]; s.IsKnown() && jsonDepth(s.AsString()) > MaxNesting {
			return cty.NilType, function.NewArgErrorf(0, "the JSON document is nested deeper than %d levels", MaxNesting)
		}
		return stdlib.JSONDecodeFunc.ReturnTypeForValues(args)
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return stdlib.JSONDecodeFunc.Call(args)
	},
})

// jsonDepth returns how deep arrays and objects nest in the JSON text s,
// or MaxNesting+1 once it is deeper.
func jsonDepth(s string) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(s) && deepest <= MaxNesting; i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Range.Start.Byte < out[j].Range.Start.Byte })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
