package pipeline

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// Pos is a position in a source file (1-based line and column, 0-based byte).
type Pos struct{ Line, Column, Byte int }

// Range is a span of a source file. The zero Range means "no source".
type Range struct {
	Filename   string
	Start, End Pos
}

// String formats the range as file:line:col.
func (r Range) String() string {
	if r.Filename == "" && r.Start.Line == 0 {
		return "<no source>"
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// AttrRanges says where each attribute of a block is set (for plugin
// settings, also each item of a list or object written out in one, under
// its path: neighbors[1].peer_as). A block sets a handful, so a list
// searched in order serves as well as a map and costs far less to build:
// a configuration of 100,000 backends builds one for each.
type AttrRanges []AttrRange

// AttrRange is where the attribute (or item path) Name is set.
type AttrRange struct {
	Name  string
	Range Range
}

// Get returns where name is set, and whether it is.
func (a AttrRanges) Get(name string) (Range, bool) {
	for i := range a {
		if a[i].Name == name {
			return a[i].Range, true
		}
	}
	return Range{}, false
}

// Or returns where name is set, or block (its block) when it is not set.
func (a AttrRanges) Or(name string, block Range) Range {
	if r, ok := a.Get(name); ok {
		return r
	}
	return block
}

// Error is a problem found while building a graph or a configuration,
// tied to the source that caused it. The hcl package turns it into an
// hcl.Diagnostic; its fields follow that shape.
type Error struct {
	Range   Range
	Summary string // short, no trailing period
	Detail  string // a full sentence that names the fix
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s; %s", e.Range, e.Summary, e.Detail)
}

// Errors is every problem found, in source order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Err returns es as an error, or nil when there is none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// AttrError is returned by Validate to blame one configuration attribute, so
// the diagnostic points at that attribute's line rather than the block.
type AttrError struct {
	Attr string // the attribute's name in HCL, e.g. "capacity"
	Msg  string // e.g. "must be greater than 0"
}

func (e *AttrError) Error() string { return e.Attr + " " + e.Msg }

// ElementDecl declares one element instance.
type ElementDecl struct {
	Name      string
	Type      string
	Range     Range // the whole block header, for "declared here"
	TypeRange Range // the type label
	// AttrRanges says where attributes are set, so that an AttrError from
	// Validate can be reported at its line.
	AttrRanges AttrRanges
	// Configure applies the file's configuration to a fresh instance; nil
	// keeps the defaults New set.
	Configure func(Element) error
	// ConfigReported is set by a loader that already reported this
	// element's configuration as invalid: Build then skips validating it
	// rather than reporting the same problem twice.
	ConfigReported bool
}

// Endpoint is one end of a connection: an element instance and a port name
// ("" for port 0).
type Endpoint struct {
	Element string
	Port    string
	Range   Range
}

func (e Endpoint) String() string {
	if e.Port == "" {
		return e.Element
	}
	return e.Element + "." + e.Port
}

// Connection joins an output port to an input port.
type Connection struct {
	From, To Endpoint
}

// Spec is a graph as declared: element instances and connections.
type Spec struct {
	Elements    []ElementDecl
	Connections []Connection
}

// Graph is a checked Spec, ready to be instantiated once per worker.
type Graph struct {
	spec  Spec
	elems []graphElem
	// order is every (element, input) node in an order in which all
	// producers of a node come before it.
	order []nodeRef
}

type graphElem struct {
	decl *ElementDecl
	typ  *ElementType
	out  []nodeRef // destination of each output port
	in   []bool    // whether each input is connected
}

type nodeRef struct{ elem, in int }

// Build checks spec and returns the graph, or every problem found: unknown
// element types and ports, duplicate names, outputs connected twice or not
// at all, unconnected inputs, invalid element configuration, and loops that
// cannot terminate.
func Build(spec Spec) (*Graph, Errors) {
	var errs Errors
	add := func(r Range, summary, format string, args ...any) {
		errs = append(errs, &Error{Range: r, Summary: summary, Detail: fmt.Sprintf(format, args...)})
	}

	g := &Graph{spec: spec}
	g.spec.Elements = append([]ElementDecl(nil), spec.Elements...)
	g.spec.Connections = append([]Connection(nil), spec.Connections...)
	byName := map[string]int{}
	declared := map[string]Range{}
	for i := range g.spec.Elements {
		d := &g.spec.Elements[i]
		if prev, dup := declared[d.Name]; dup {
			add(d.Range, "Duplicate element name",
				"An element named %q was already declared at %s; give this one another name.", d.Name, prev)
			continue
		}
		declared[d.Name] = d.Range
		t, ok := Lookup(d.Type)
		if !ok {
			add(d.TypeRange, "Unknown element type",
				"There is no element type %q%s; the types built into xlbd are: %s.", d.Type, Suggest(d.Type, Types()), strings.Join(Types(), ", "))
			continue
		}
		byName[d.Name] = len(g.elems)
		g.elems = append(g.elems, graphElem{
			decl: d, typ: t,
			out: fill(make([]nodeRef, len(t.Outputs)), nodeRef{-1, -1}),
			in:  make([]bool, len(t.Inputs)),
		})
		if !d.ConfigReported {
			if err := probeConfig(d, t); err != nil {
				errs = append(errs, err)
			}
		}
	}

	outFrom := map[nodeRef]Range{}
	// An element in a connection that failed to resolve is likely to have a
	// port left unconnected because of it; reporting that too would bury the
	// real problem, so such elements skip the unconnected-port checks.
	tainted := map[int]bool{}
	for _, c := range g.spec.Connections {
		fi, fok := byName[c.From.Element]
		ti, tok := byName[c.To.Element]
		if fok && !tok {
			tainted[fi] = true
		}
		if tok && !fok {
			tainted[ti] = true
		}
		if !fok {
			add(c.From.Range, "Unknown element", "No element named %q is declared; declare it with an element block or fix the name.", c.From.Element)
		}
		if !tok {
			add(c.To.Range, "Unknown element", "No element named %q is declared; declare it with an element block or fix the name.", c.To.Element)
		}
		if !fok || !tok {
			continue
		}
		from, to := &g.elems[fi], &g.elems[ti]
		op := from.typ.OutputPort(c.From.Port)
		ip := to.typ.InputPort(c.To.Port)
		if op < 0 || op >= len(from.typ.Outputs) {
			add(c.From.Range, "Unknown output port", "%s (%s) has %s; connect one of those.", c.From.Element, from.typ.Name, portList("output", from.typ.Outputs))
		}
		if ip < 0 || ip >= len(to.typ.Inputs) {
			add(c.To.Range, "Unknown input port", "%s (%s) has %s; connect one of those.", c.To.Element, to.typ.Name, portList("input", to.typ.Inputs))
		}
		if op < 0 || op >= len(from.typ.Outputs) || ip < 0 || ip >= len(to.typ.Inputs) {
			tainted[fi], tainted[ti] = true, true
			continue
		}
		key := nodeRef{fi, op}
		if prev, dup := outFrom[key]; dup {
			add(c.From.Range, "Output connected twice",
				"Output %s.%s is already connected at %s; an output feeds exactly one input (use a Tee to copy packets).", c.From.Element, from.typ.Outputs[op], prev)
			continue
		}
		outFrom[key] = c.From.Range
		from.out[op] = nodeRef{ti, ip}
		to.in[ip] = true
	}

	sources := 0
	for ei, e := range g.elems {
		if len(e.typ.Inputs) == 0 {
			sources++
		}
		if tainted[ei] {
			continue
		}
		for o, dst := range e.out {
			if dst.elem < 0 {
				add(e.decl.Range, "Unconnected output",
					"Output %s.%s is not connected; connect it, for example to a Discard element, so that no packet leaves the graph uncounted.", e.decl.Name, e.typ.Outputs[o])
			}
		}
		for i, ok := range e.in {
			if !ok {
				add(e.decl.Range, "Unconnected input",
					"Input %s.%s is not connected, so the element would never see packets there; connect it or remove the element.", e.decl.Name, e.typ.Inputs[i])
			}
		}
	}
	if len(g.elems) > 0 && sources == 0 {
		add(g.spec.Elements[0].Range, "No source element",
			"The pipeline has no element without inputs (such as RxXDP or RxPcap), so no packet would ever enter it; add one.")
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errs
	}
	if err := g.order_(); err != nil {
		return nil, Errors{err}
	}
	return g, nil
}

// configured returns a throwaway instance of d, configured and
// validated.
func configured(d *ElementDecl, t *ElementType) (Element, error) {
	el := t.New()
	var err error
	if d.Configure != nil {
		err = d.Configure(el)
	}
	if v, ok := el.(Validator); ok && err == nil {
		err = v.Validate()
	}
	return el, err
}

// BackendCheck is the check of the backends one element can reach
// (BackendChecker), with the element it comes from.
type BackendCheck struct {
	Element, Type string
	Check         func(netip.Addr) error
}

// BackendChecks returns the backend checks of the graph's elements that
// have one, in declaration order, from throwaway instances (Probe).
func (g *Graph) BackendChecks() []BackendCheck {
	var out []BackendCheck
	for d, el := range g.Probe {
		bc, ok := el.(BackendChecker)
		if !ok {
			continue
		}
		if check := bc.BackendCheck(); check != nil {
			out = append(out, BackendCheck{d.Name, d.Type, check})
		}
	}
	return out
}

// Probe yields, in declaration order, each element's declaration and a
// throwaway instance of it, configured and validated (Build has done
// both), for checks of a file that run nothing: a loader asks them
// what they need of the backends or the snapshot.
func (g *Graph) Probe(yield func(*ElementDecl, Element) bool) {
	for _, e := range g.elems {
		el, err := configured(e.decl, e.typ)
		if err != nil {
			continue
		}
		if !yield(e.decl, el) {
			return
		}
	}
}

// probeConfig configures and validates a throwaway instance, so that
// configuration errors surface at build time with their source.
func probeConfig(d *ElementDecl, t *ElementType) *Error {
	_, err := configured(d, t)
	if err == nil {
		return nil
	}
	r := d.Range
	var ae *AttrError
	if errors.As(err, &ae) {
		r = d.AttrRanges.Or(ae.Attr, d.Range)
	}
	return &Error{Range: r, Summary: "Invalid element configuration",
		Detail: fmt.Sprintf("While configuring `%s` (%s): %s.", d.Name, d.Type, strings.TrimSuffix(err.Error(), "."))}
}

// order_ sorts the (element, input) nodes topologically, or reports a loop
// in which a packet could circulate forever.
func (g *Graph) order_() *Error {
	idx := map[nodeRef]int{}
	var nodes []nodeRef
	for ei, e := range g.elems {
		for in := range e.typ.Inputs {
			idx[nodeRef{ei, in}] = len(nodes)
			nodes = append(nodes, nodeRef{ei, in})
		}
	}
	succ := make([][]int, len(nodes))
	indeg := make([]int, len(nodes))
	for ni, n := range nodes {
		e := g.elems[n.elem]
		seen := map[int]bool{}
		for _, o := range e.typ.routes(n.in) {
			d := idx[e.out[o]]
			if !seen[d] {
				seen[d] = true
				succ[ni] = append(succ[ni], d)
				indeg[d]++
			}
		}
	}
	var queue, order []int
	for i, d := range indeg {
		if d == 0 {
			queue = append(queue, i)
		}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		order = append(order, n)
		for _, s := range succ[n] {
			if indeg[s]--; indeg[s] == 0 {
				queue = append(queue, s)
			}
		}
	}
	if len(order) < len(nodes) {
		cycle := findCycle(nodes, succ, indeg)
		names := make([]string, len(cycle))
		for i, n := range cycle {
			e := g.elems[nodes[n].elem]
			names[i] = e.decl.Name + "." + e.typ.Inputs[nodes[n].in]
		}
		first := g.elems[nodes[cycle[0]].elem].decl
		return &Error{Range: first.Range, Summary: "Loop that cannot terminate",
			Detail: fmt.Sprintf("A packet could circulate forever through %s; break the loop so that every path reaches a sink.", strings.Join(append(names, names[0]), " -> "))}
	}
	g.order = make([]nodeRef, len(order))
	for i, n := range order {
		g.order[i] = nodes[n]
	}
	return nil
}

// findCycle returns one cycle among the nodes Kahn's algorithm left over
// (those with indeg > 0).
func findCycle(nodes []nodeRef, succ [][]int, indeg []int) []int {
	state := make([]int, len(nodes)) // 0 new, 1 on stack, 2 done
	var stack []int
	var found []int
	var visit func(n int) bool
	visit = func(n int) bool {
		state[n] = 1
		stack = append(stack, n)
		for _, s := range succ[n] {
			if indeg[s] == 0 {
				continue
			}
			if state[s] == 1 {
				for i, m := range stack {
					if m == s {
						found = append([]int(nil), stack[i:]...)
					}
				}
				return true
			}
			if state[s] == 0 && visit(s) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		return false
	}
	for n := range nodes {
		if indeg[n] > 0 && state[n] == 0 && visit(n) {
			break
		}
	}
	return found
}

// Spec returns the graph as declared.
func (g *Graph) Spec() Spec { return g.spec }

func fill[T any](s []T, v T) []T {
	for i := range s {
		s[i] = v
	}
	return s
}

func portList(kind string, names []string) string {
	switch len(names) {
	case 0:
		return "no " + kind + " ports"
	case 1:
		return kind + " " + quoteAll(names)
	}
	return kind + "s " + quoteAll(names)
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "`" + n + "`"
	}
	return strings.Join(q, ", ")
}

// Suggest returns ` (did you mean "X"?)` for the candidate closest to name
// within two edits (ignoring case), or "": diagnostics append it after the
// unknown name.
func Suggest(name string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Range, es[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
}
