package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// Test element types, registered under names no real element uses.

// tSource emits `count` packets in batches of `batch`, then io.EOF.
type tSource struct {
	Count int `hcl:"count,optional"`
	Batch int `hcl:"batch,optional"`
	pkts  [MaxBatch]Packet
	frame [MaxBatch][Headroom + 64]byte
	sent  int
}

func (s *tSource) Pull(b *Batch) error {
	for b.N < s.Batch && s.sent < s.Count {
		p := &s.pkts[b.N]
		p.SetFrame(s.frame[b.N][:], Headroom, Headroom+1)
		p.Data()[0] = byte(s.sent)
		b.Add(p, 0)
		s.sent++
	}
	if s.sent == s.Count {
		return io.EOF
	}
	return nil
}

// tSplit sends even first bytes to out 0, odd ones to out 1.
type tSplit struct{}

func (tSplit) Push(in int, p *Packet) int { return int(p.Data()[0] & 1) }

// tLoop mimics ConnTrack: lookup -> {hit, miss}; learn -> {hit}. A packet
// is a "hit" on lookup when its first byte is a multiple of 3.
type tLoop struct{ learned int }

func (l *tLoop) Push(in int, p *Packet) int {
	if in == 1 {
		l.learned++
		return 0
	}
	if p.Data()[0]%3 == 0 {
		return 0
	}
	return 1
}

type tPass struct{}

func (tPass) Push(in int, p *Packet) int { return 0 }

// tSink counts what it consumes, and records lifecycle calls.
type tSink struct {
	Fail    bool `hcl:"fail,optional"`
	got     atomic.Uint64
	batches int
	cleaned *atomic.Int32
}

func (s *tSink) Push(in int, p *Packet) int { s.got.Add(1); return Consumed }
func (s *tSink) EndBatch()                  { s.batches++ }
func (s *tSink) Provision(ctx *Context) error {
	s.cleaned, _ = ctx.Value("cleaned").(*atomic.Int32)
	if s.Fail {
		return errors.New("provision failed on purpose")
	}
	return nil
}
func (s *tSink) Cleanup() error {
	if s.cleaned != nil {
		s.cleaned.Add(1)
	}
	return nil
}
func (s *tSink) Stats(emit func(Metric)) {
	emit(Metric{Name: "xlb_test_sunk_total", Value: s.got.Load()})
}

type tValidated struct {
	Size int `hcl:"size,optional"`
}

func (v *tValidated) Validate() error {
	if v.Size <= 0 {
		return &AttrError{Attr: "size", Msg: "must be greater than 0"}
	}
	return nil
}
func (v *tValidated) Push(in int, p *Packet) int { return 0 }

func init() {
	Register(ElementType{Name: "TSource", Outputs: []string{"out"}, New: func() Element { return &tSource{Count: 10, Batch: MaxBatch} }})
	Register(ElementType{Name: "TSplit", Inputs: []string{"in"}, Outputs: []string{"even", "odd"}, New: func() Element { return tSplit{} }})
	Register(ElementType{Name: "TLoop", Inputs: []string{"lookup", "learn"}, Outputs: []string{"hit", "miss"},
		Routes: [][]int{{0, 1}, {0}}, New: func() Element { return &tLoop{} }})
	Register(ElementType{Name: "TPass", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return tPass{} }})
	Register(ElementType{Name: "TSink", Inputs: []string{"in"}, New: func() Element { return &tSink{} }})
	Register(ElementType{Name: "TValidated", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return &tValidated{Size: 1} }})
}

func decl(name, typ string, line int) ElementDecl {
	r := Range{Filename: "t.hcl", Start: Pos{Line: line, Column: 1, Byte: line * 100}}
	return ElementDecl{Name: name, Type: typ, Range: r, TypeRange: r}
}

func conn(from, to string, line int) Connection {
	ep := func(s string, col int) Endpoint {
		name, port, _ := strings.Cut(s, ".")
		return Endpoint{Element: name, Port: port, Range: Range{Filename: "t.hcl", Start: Pos{Line: line, Column: col, Byte: line*100 + col}}}
	}
	return Connection{From: ep(from, 1), To: ep(to, 10)}
}

// loopSpec is the default graph's shape: src -> ct; ct.hit -> sink;
// ct.miss -> sel -> ct.learn.
func loopSpec() Spec {
	return Spec{
		Elements: []ElementDecl{decl("src", "TSource", 1), decl("ct", "TLoop", 2), decl("sel", "TPass", 3), decl("sink", "TSink", 4)},
		Connections: []Connection{
			conn("src", "ct", 10), conn("ct.hit", "sink", 11), conn("ct.miss", "sel", 12), conn("sel", "ct.learn", 13),
		},
	}
}

func TestBuildAcceptsTerminatingLoop(t *testing.T) {
	g, errs := Build(loopSpec())
	if errs != nil {
		t.Fatalf("Build: %v", errs)
	}
	rt, err := g.Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats := rt.Stats()
	byName := map[string]ElementStats{}
	for _, s := range stats {
		byName[s.Name] = s
	}
	// Packets 0..9: 0, 3, 6, 9 hit on lookup; the other six miss, are
	// learned and leave by hit too.
	ct := byName["ct"]
	if ct.In[0].Packets != 10 || ct.In[1].Packets != 6 || ct.Out[0].Packets != 10 || ct.Out[1].Packets != 6 {
		t.Errorf("ct counters = in %v out %v, want in lookup=10 learn=6, out hit=10 miss=6", ct.In, ct.Out)
	}
	if s := byName["sink"]; s.Consumed != 10 || len(s.Metrics) != 1 || s.Metrics[0].Value != 10 {
		t.Errorf("sink consumed %d metrics %v, want 10", s.Consumed, s.Metrics)
	}
}

// startSpec builds spec and starts it with opts, closed when the test ends.
func startSpec(t *testing.T, spec Spec, opts Options) *Runtime {
	t.Helper()
	g, errs := Build(spec)
	if errs != nil {
		t.Fatal(errs)
	}
	rt, err := g.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string // summaries, in source order
	}{
		{
			name: "unknown type with suggestion",
			spec: Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("x", "TSpilt", 2)},
				Connections: []Connection{conn("src", "x", 3)}},
			want: []string{"Unknown element type", "Unknown element"},
		},
		{
			name: "unknown ports",
			spec: Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("s", "TSplit", 2), decl("k", "TSink", 3)},
				Connections: []Connection{conn("src", "s", 4), conn("s.evn", "k", 5), conn("s.odd", "k.nope", 6)}},
			want: []string{"Unknown output port", "Unknown input port"},
		},
		{
			name: "duplicate name and output connected twice",
			spec: Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("k", "TSink", 2), decl("k", "TSink", 3)},
				Connections: []Connection{conn("src", "k", 4), conn("src", "k", 5)}},
			want: []string{"Duplicate element name", "Output connected twice"},
		},
		{
			name: "unconnected input",
			spec: Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("ct", "TLoop", 2), decl("k", "TSink", 3)},
				Connections: []Connection{conn("src", "ct", 4), conn("ct.hit", "k", 5), conn("ct.miss", "k", 6)}},
			want: []string{"Unconnected input"},
		},
		{
			name: "no source",
			spec: Spec{Elements: []ElementDecl{decl("p", "TPass", 1), decl("k", "TSink", 2)},
				Connections: []Connection{conn("p", "k", 3)}},
			want: []string{"Unconnected input", "No source element"},
		},
		{
			name: "loop that cannot terminate",
			spec: Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("a", "TSplit", 2), decl("b", "TPass", 3), decl("k", "TSink", 4)},
				Connections: []Connection{conn("src", "a", 5), conn("a.even", "b", 6), conn("b", "a", 7), conn("a.odd", "k", 8)}},
			want: []string{"Loop that cannot terminate"},
		},
		{
			name: "invalid configuration blames the attribute",
			spec: func() Spec {
				d := decl("v", "TValidated", 2)
				d.Configure = func(e Element) error { e.(*tValidated).Size = 0; return nil }
				d.AttrRanges = AttrRanges{{Name: "size", Range: Range{Filename: "t.hcl", Start: Pos{Line: 9, Column: 3}}}}
				return Spec{Elements: []ElementDecl{decl("src", "TSource", 1), d, decl("k", "TSink", 3)},
					Connections: []Connection{conn("src", "v", 4), conn("v", "k", 5)}}
			}(),
			want: []string{"Invalid element configuration"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, errs := Build(tt.spec)
			if g != nil {
				t.Fatal("Build returned a graph despite errors")
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Summary)
				if e.Range.Filename != "t.hcl" {
					t.Errorf("%q has no source range", e.Summary)
				}
				if !strings.HasSuffix(e.Detail, ".") {
					t.Errorf("detail %q is not a sentence", e.Detail)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("summaries = %q, want %q\n%v", got, tt.want, errs)
			}
		})
	}
}

func TestBuildErrorDetails(t *testing.T) {
	spec := Spec{Elements: []ElementDecl{decl("src", "TSource", 1), decl("x", "TSpilt", 2)}}
	_, errs := Build(spec)
	if !strings.Contains(errs.Error(), `did you mean "TSplit"?`) {
		t.Errorf("want a suggestion for TSpilt, got %v", errs)
	}
	_, errs = Build(Spec{Elements: []ElementDecl{decl("x", "Nope", 1), decl("src", "TSource", 2), decl("x", "TSink", 3)}})
	if !strings.Contains(errs.Error(), `An element named "x" was already declared at t.hcl:1:1`) {
		t.Errorf("a duplicate must name the first declaration, even of an unknown type: %v", errs)
	}
	v := decl("v", "TValidated", 2)
	v.Configure = func(e Element) error { e.(*tValidated).Size = -1; return nil }
	v.AttrRanges = AttrRanges{{Name: "size", Range: Range{Filename: "t.hcl", Start: Pos{Line: 9, Column: 3}}}}
	_, errs = Build(Spec{Elements: []ElementDecl{v}})
	if len(errs) == 0 || errs[0].Range.Start.Line != 9 || !strings.Contains(errs[0].Detail, "While configuring `v` (TValidated): size must be greater than 0.") {
		t.Errorf("want the error at the size attribute (line 9), got %v", errs)
	}
}

func TestStartCleansUpAfterFailedProvision(t *testing.T) {
	spec := Spec{
		Elements: []ElementDecl{decl("src", "TSource", 1), decl("ok", "TSink", 2), decl("src2", "TSource", 3), decl("bad", "TSink", 4)},
		Connections: []Connection{
			conn("src", "ok", 5), conn("src2", "bad", 6),
		},
	}
	spec.Elements[3].Configure = func(e Element) error { e.(*tSink).Fail = true; return nil }
	g, errs := Build(spec)
	if errs != nil {
		t.Fatal(errs)
	}
	var cleaned atomic.Int32
	_, err := g.Start(Options{Workers: 2, Values: map[any]any{"cleaned": &cleaned}})
	if err == nil || !strings.Contains(err.Error(), "while configuring `bad` (TSink): provision failed on purpose") {
		t.Fatalf("Start error = %v", err)
	}
	// Worker 0 never completes: its `ok` and the failed `bad` are both cleaned.
	if cleaned.Load() != 2 {
		t.Errorf("cleaned %d elements, want 2 (the provisioned one and the failed one)", cleaned.Load())
	}
}

func TestWorkersShareNothingAndStatsSum(t *testing.T) {
	rt := startSpec(t, loopSpec(), Options{Workers: 3})
	ws := rt.Workers()
	if len(ws) != 3 || ws[0].Element("ct") == ws[1].Element("ct") {
		t.Fatal("workers must have their own element instances")
	}
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, s := range rt.Stats() {
		if s.Name == "sink" && s.Consumed != 30 {
			t.Errorf("sink consumed %d over 3 workers, want 30", s.Consumed)
		}
	}
}

func TestProcessDoesNotAllocate(t *testing.T) {
	rt := startSpec(t, loopSpec(), Options{})
	if allocs := processAllocs(rt.Workers()[0]); allocs != 0 {
		t.Errorf("Process allocates %.1f times per batch, want 0", allocs)
	}
}

// fullBatch fills b with MaxBatch one-byte packets, their byte their index
// in the batch.
func fullBatch(b *Batch) {
	b.Reset()
	for i := range MaxBatch {
		p := &Packet{}
		p.SetFrame(make([]byte, Headroom+64), Headroom, Headroom+1)
		p.Data()[0] = byte(i)
		b.Add(p, 0)
	}
}

// processAllocs returns the allocations of one full batch through inst's
// source 0, in steady state.
func processAllocs(inst *Instance) float64 {
	var b, full Batch
	fullBatch(&full)
	return testing.AllocsPerRun(100, func() {
		b = full
		inst.Process(0, &b)
	})
}

func TestPacketHeadroom(t *testing.T) {
	var p Packet
	buf := make([]byte, Headroom+100)
	p.SetFrame(buf, Headroom, Headroom+60)
	if p.Len() != 60 || p.Headroom() != Headroom || p.Tailroom() != 40 {
		t.Fatalf("len %d headroom %d tailroom %d", p.Len(), p.Headroom(), p.Tailroom())
	}
	if d := p.Prepend(24); len(d) != 84 || p.Headroom() != Headroom-24 {
		t.Errorf("Prepend: len %d headroom %d", len(d), p.Headroom())
	}
	if p.Prepend(Headroom) != nil {
		t.Error("Prepend beyond headroom must fail")
	}
	if d := p.Pull(24); len(d) != 60 {
		t.Errorf("Pull: len %d", len(d))
	}
	if p.Pull(61) != nil || p.Extend(41) != nil {
		t.Error("Pull/Extend beyond bounds must fail")
	}
	p.Truncate(10)
	if p.Len() != 10 {
		t.Errorf("Truncate: len %d", p.Len())
	}
}

func TestDOT(t *testing.T) {
	g, errs := Build(loopSpec())
	if errs != nil {
		t.Fatal(errs)
	}
	var b strings.Builder
	if err := g.WriteDOT(&b, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"ct" [label="ct :: TLoop"]`, `"ct" -> "sel" [taillabel="miss", headlabel="in"]`, `"sel" -> "ct" [taillabel="out", headlabel="learn"]`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("DOT lacks %s:\n%s", want, b.String())
		}
	}
}

// TestDOTCounts: the running graph's DOT carries, on every edge, the
// packets its output port passed over all workers, and on every node the
// element's consumed and dropped packets by reason, as Stats has them.
func TestDOTCounts(t *testing.T) {
	rt := startSpec(t, Spec{
		Elements:    []ElementDecl{decl("src", "TSource", 1), decl("dr", "TDrop", 2), decl("k", "TLossy", 3)},
		Connections: []Connection{conn("src", "dr", 4), conn("dr", "k", 5)},
	}, Options{Workers: 2})
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats := rt.Stats()
	var b strings.Builder
	if err := rt.Graph().WriteDOT(&b, stats); err != nil {
		t.Fatal(err)
	}
	dot := b.String()
	edges := regexp.MustCompile(`"(\w+)" -> "\w+" \[taillabel="(\w+)", headlabel="\w+", label="(\d+)"\];`).FindAllStringSubmatch(dot, -1)
	if len(edges) != 2 {
		t.Fatalf("%d edges with counts, want 2:\n%s", len(edges), dot)
	}
	for _, e := range edges {
		var want uint64
		for _, s := range stats {
			for _, p := range s.Out {
				if s.Name == e[1] && p.Port == e[2] {
					want = p.Packets
				}
			}
		}
		if e[3] != fmt.Sprint(want) || want == 0 {
			t.Errorf("edge %s.%s: %s packets, want %d as Stats says", e[1], e[2], e[3], want)
		}
	}
	for _, want := range []string{
		`"dr" [label="dr :: TDrop\ldropped 10\l  pipelinetest.odd 10\l"]`,
		`"k" [label="k :: TLossy\lconsumed 4\ldropped 6\l  pipelinetest.lost 6\l"]`,
		`"src" [label="src :: TSource"]`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %s:\n%s", want, dot)
		}
	}
	if err := rt.Graph().WriteDOT(&b, stats[1:]); err == nil {
		t.Error("stats of another graph were taken")
	}
}

func BenchmarkProcess(b *testing.B) {
	g, errs := Build(loopSpec())
	if errs != nil {
		b.Fatal(errs)
	}
	rt, err := g.Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	inst := rt.Workers()[0]
	var batch, full Batch
	fullBatch(&full)
	b.ReportAllocs()
	for i := 0; i < b.N; i += MaxBatch {
		batch = full
		inst.Process(0, &batch)
	}
}

// tSuggest is a source that suggests Want workers.
type tSuggest struct {
	tSource
	Want int `hcl:"want,optional"`
}

func (s *tSuggest) SuggestWorkers() (int, error) { return s.Want, nil }

func init() {
	Register(ElementType{Name: "TSuggest", Outputs: []string{"out"}, New: func() Element { return &tSuggest{tSource: tSource{Count: 1, Batch: 1}} }})
}

// sourcesSpec is a graph of n sources of type typ, s0 to s(n-1), the
// i-th configured by configure, all connected to one sink k.
func sourcesSpec(typ string, n int, configure func(e Element, i int)) Spec {
	var s Spec
	for i := range n {
		d := decl(fmt.Sprintf("s%d", i), typ, i+1)
		d.Configure = func(e Element) error { configure(e, i); return nil }
		s.Elements = append(s.Elements, d)
		s.Connections = append(s.Connections, conn(d.Name, "k", 10+i))
	}
	s.Elements = append(s.Elements, decl("k", "TSink", 9))
	return s
}

func TestSuggestedWorkers(t *testing.T) {
	spec := func(wants ...int) Spec {
		return sourcesSpec("TSuggest", len(wants), func(e Element, i int) { e.(*tSuggest).Want = wants[i] })
	}
	for _, tt := range []struct {
		wants []int
		want  int
	}{
		{[]int{1}, 1},
		{[]int{0}, 1},                      // no opinion: one worker
		{[]int{2, 1 << 20}, 2},             // the smallest wins
		{[]int{1 << 20}, runtime.NumCPU()}, // capped by CPUs
	} {
		g, errs := Build(spec(tt.wants...))
		if errs != nil {
			t.Fatal(errs)
		}
		if got, err := g.SuggestedWorkers(); err != nil || got != tt.want {
			t.Errorf("SuggestedWorkers with %v = %d, %v; want %d", tt.wants, got, err, tt.want)
		}
	}
}

// tPreflight is a source whose Preflight reports Lacks, one error each.
type tPreflight struct {
	tSource
	Lacks []string
}

func (s *tPreflight) Preflight() []error {
	var errs []error
	for _, l := range s.Lacks {
		errs = append(errs, errors.New(l))
	}
	return errs
}

func init() {
	Register(ElementType{Name: "TPreflight", Outputs: []string{"out"}, New: func() Element { return &tPreflight{tSource: tSource{Count: 1, Batch: 1}} }})
}

// TestPreflight: every element's problems are returned at once, each with
// the first element that found it; an element without Preflight and a
// host that lacks nothing give none.
func TestPreflight(t *testing.T) {
	spec := func(lacks ...[]string) Spec {
		return sourcesSpec("TPreflight", len(lacks), func(e Element, i int) { e.(*tPreflight).Lacks = lacks[i] })
	}
	for _, tt := range []struct {
		lacks [][]string
		want  string
	}{
		{[][]string{nil}, ""},
		{[][]string{{"no eth9", "no CAP_BPF"}, {"no eth9"}, {"no CAP_BPF", "no memory"}},
			"`s0` (TPreflight): no eth9\n`s0` (TPreflight): no CAP_BPF\n`s2` (TPreflight): no memory"},
	} {
		g, errs := Build(spec(tt.lacks...))
		if errs != nil {
			t.Fatal(errs)
		}
		got := ""
		if err := g.Preflight(); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("Preflight with %q:\n%s\nwant\n%s", tt.lacks, got, tt.want)
		}
	}
}

func TestPinEachWorker(t *testing.T) {
	g, errs := Build(loopSpec())
	if errs != nil {
		t.Fatal(errs)
	}
	var pinned [3]atomic.Int32
	rt, err := g.Start(Options{Workers: 3, Pin: func(w int) error { pinned[w].Add(1); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for w := range pinned {
		if pinned[w].Load() != 1 {
			t.Errorf("worker %d pinned %d times, want 1", w, pinned[w].Load())
		}
	}
	rt2, err := g.Start(Options{Pin: func(int) error { return errors.New("no such CPU") }})
	if err != nil {
		t.Fatal(err)
	}
	defer rt2.Close()
	if err := rt2.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "worker 0: pinning: no such CPU") {
		t.Errorf("a failed pin must stop the run with its reason, got %v", err)
	}
}

// tOrdered is a source and a sink that record the order they are
// provisioned in, through a shared list.
type tOrdered struct {
	tSource
	order *[]string
}

func (o *tOrdered) Provision(ctx *Context) error {
	o.order = ctx.Shared("order", func() any { return &[]string{} }).(*[]string)
	*o.order = append(*o.order, ctx.Name)
	return nil
}

type tOrderedSink struct{ tOrdered }

func (tOrderedSink) Push(int, *Packet) int { return Consumed }

func init() {
	Register(ElementType{Name: "TOrderedSource", Outputs: []string{"out"}, New: func() Element { return &tOrdered{tSource: tSource{Count: 1, Batch: 1}} }})
	Register(ElementType{Name: "TOrderedSink", Inputs: []string{"in"}, New: func() Element { return &tOrderedSink{} }})
}

// TestSourcesProvisionFirst: a sink that needs its source's resources
// (TxXDP and RxXDP's socket) may be declared before it.
func TestSourcesProvisionFirst(t *testing.T) {
	rt := startSpec(t, Spec{
		Elements:    []ElementDecl{decl("tx", "TOrderedSink", 1), decl("rx", "TOrderedSource", 2)},
		Connections: []Connection{conn("rx", "tx", 3)},
	}, Options{})
	order := rt.Workers()[0].Element("tx").(*tOrderedSink).order
	if strings.Join(*order, ",") != "rx,tx" {
		t.Errorf("provisioned in order %v, want the source first: rx,tx", *order)
	}
}

// tLocal is a worker-local object that logs its batch hooks; tLocalUser is
// an element that shares its worker's tLocal and logs its own hooks there.
type tLocal struct{ log []string }

func (l *tLocal) StartBatch(int64) { l.log = append(l.log, "local start") }
func (l *tLocal) EndBatch()        { l.log = append(l.log, "local end") }

type tLocalKey struct{}

type tLocalUser struct {
	name  string
	local *tLocal
}

func (u *tLocalUser) Provision(ctx *Context) error {
	u.name = ctx.Name
	u.local = ctx.Local(tLocalKey{}, func() any { return &tLocal{} }).(*tLocal)
	return nil
}
func (u *tLocalUser) StartBatch(int64)      { u.local.log = append(u.local.log, u.name+" start") }
func (u *tLocalUser) EndBatch()             { u.local.log = append(u.local.log, u.name+" end") }
func (u *tLocalUser) Push(int, *Packet) int { return 0 }

func init() {
	Register(ElementType{Name: "TLocalUser", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return &tLocalUser{} }})
}

// TestLocalFramesEveryBatch: a worker's Local object is shared by its
// elements only, and its StartBatch runs before every element's, its
// EndBatch after every element's, once per batch.
func TestLocalFramesEveryBatch(t *testing.T) {
	rt := startSpec(t, Spec{
		Elements:    []ElementDecl{decl("src", "TSource", 1), decl("a", "TLocalUser", 2), decl("b", "TLocalUser", 3), decl("k", "TSink", 4)},
		Connections: []Connection{conn("src", "a", 5), conn("a", "b", 6), conn("b", "k", 7)},
	}, Options{Workers: 2})
	w0, w1 := rt.Workers()[0], rt.Workers()[1]
	l0 := w0.Element("a").(*tLocalUser).local
	if w0.Element("b").(*tLocalUser).local != l0 || w1.Element("a").(*tLocalUser).local == l0 {
		t.Fatal("a Local object must be shared by one worker's elements and by no other worker")
	}
	w0.Process(0, &Batch{})
	want := "local start,a start,b start,a end,b end,local end"
	if got := strings.Join(l0.log, ","); got != want {
		t.Errorf("one batch ran %s, want %s", got, want)
	}
}

var (
	reasonOdd  = NewReason("pipelinetest.odd")
	reasonLost = NewReason("pipelinetest.lost")
)

// tDrop drops packets whose first byte is odd; tLossy consumes every
// packet and, at the end of the batch, reports those whose first byte is
// a multiple of 4 as lost (as a transmit ring refusing them would).
type tDrop struct{}

func (tDrop) Push(_ int, p *Packet) int {
	if p.Data()[0]&1 == 1 {
		p.Reason = reasonOdd
		return Drop
	}
	return 0
}

type tLossy struct {
	drops *DropCounter
	lost  uint64
}

func (l *tLossy) Provision(ctx *Context) error { l.drops = ctx.DropCounter(); return nil }
func (l *tLossy) Push(_ int, p *Packet) int {
	if p.Data()[0]%4 == 0 {
		l.lost++
	}
	return Consumed
}
func (l *tLossy) EndBatch() {
	l.drops.Add(reasonLost, l.lost)
	l.lost = 0
}

// recycler counts the frames handed back to it.
type recycler struct{ n int }

func (r *recycler) Recycle(*Packet) { r.n++ }

func init() {
	Register(ElementType{Name: "TDrop", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return tDrop{} }})
	Register(ElementType{Name: "TLossy", Inputs: []string{"in"}, New: func() Element { return &tLossy{} }})
}

// TestEngineCountsDrops: a drop is counted once, under the element that
// dropped it and its reason, and its frame recycled; a packet lost after
// it was consumed moves from consumed to dropped; and every packet that
// entered is either consumed or dropped.
func TestEngineCountsDrops(t *testing.T) {
	rt := startSpec(t, Spec{
		Elements:    []ElementDecl{decl("src", "TSource", 1), decl("dr", "TDrop", 2), decl("k", "TLossy", 3)},
		Connections: []Connection{conn("src", "dr", 4), conn("dr", "k", 5)},
	}, Options{Workers: 2})
	rec := make([]recycler, 2)
	for w, inst := range rt.Workers() {
		src := inst.Element("src").(*tSource)
		src.Batch = 3
		for i := range src.pkts {
			src.pkts[i].Owner = &rec[w]
		}
	}
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Per worker: bytes 0..9; 1, 3, 5, 7, 9 dropped by dr; 0, 4, 8 lost
	// by k; 2, 6 sent.
	byName := map[string]ElementStats{}
	var in, out uint64
	for _, s := range rt.Stats() {
		byName[s.Name] = s
		if s.Name == "src" {
			in = s.Out[0].Packets
		}
		out += s.Consumed + s.Dropped
	}
	want := map[string][2]uint64{"src": {0, 0}, "dr": {0, 10}, "k": {4, 6}}
	for name, w := range want {
		if s := byName[name]; s.Consumed != w[0] || s.Dropped != w[1] {
			t.Errorf("%s: consumed %d dropped %d, want %d and %d", name, s.Consumed, s.Dropped, w[0], w[1])
		}
	}
	metric := func(s ElementStats) string {
		var got []string
		for _, m := range s.Metrics {
			got = append(got, fmt.Sprintf("%s%s=%d", m.Name, formatLabels(m.Labels), m.Value))
		}
		return strings.Join(got, " ")
	}
	if got := metric(byName["dr"]); got != `xlb_drop_packets_total{element="dr",reason="pipelinetest.odd"}=10` {
		t.Errorf("dr metrics: %s", got)
	}
	if got := metric(byName["k"]); got != `xlb_drop_packets_total{element="k",reason="pipelinetest.lost"}=6` {
		t.Errorf("k metrics: %s", got)
	}
	if rec[0].n != 5 || rec[1].n != 5 {
		t.Errorf("recycled %d and %d frames, want the 5 dropped in each worker", rec[0].n, rec[1].n)
	}
	if in != 20 || out != in {
		t.Errorf("%d packets in, %d consumed or dropped; want 20 and 20", in, out)
	}
	var b strings.Builder
	if err := WriteText(&b, rt.Stats()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "k (TLossy)\n  in  in                     10\n  consumed                    4\n  dropped                     6\n") {
		t.Errorf("WriteText:\n%s", b.String())
	}

	if allocs := processAllocs(rt.Workers()[0]); allocs != 0 {
		t.Errorf("a batch with drops allocates %.1f times, want 0", allocs)
	}
}
