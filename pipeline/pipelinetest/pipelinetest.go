// Package pipelinetest runs one element type inside a real pipeline graph,
// for the element's own tests: a TestSource feeds each input, a TestSink
// keeps what leaves each output, and the engine (Build, Start,
// Instance.Process, Runtime.Run) does the rest, so a test sees what xlbd
// would do with the element.
//
//	h := pipelinetest.New(t, "Parse5Tuple", pipelinetest.Options{Values: values})
//	out := h.Push(now, pkts...) // out["out"], out["bad"]
//	stats := h.Stats()
//
// Importing the package registers the element types TestSource, TestSink
// and TestFunc; it is meant for _test.go files only.
package pipelinetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

// Element type names registered by this package.
const (
	sourceType = "PipelineTestSource" // no inputs; output `out`: the batches a test gives it
	sinkType   = "PipelineTestSink"   // input `in`: keeps every packet
	funcType   = "PipelineTestFunc"   // input `in`, output `out`: applies a Loop's function
)

// elemName is the instance name of the element under test.
const elemName = "elem"

func init() {
	pipeline.Register(pipeline.ElementType{Name: sourceType, Doc: "Hands the graph the batches a test gives it, then io.EOF (test only).",
		Outputs: []string{"out"}, New: func() pipeline.Element { return &source{} }})
	pipeline.Register(pipeline.ElementType{Name: sinkType, Doc: "Keeps every packet it receives (test only).",
		Inputs: []string{"in"}, New: func() pipeline.Element { return &sink{} }})
	pipeline.Register(pipeline.ElementType{Name: funcType, Doc: "Applies a test's function to every packet (test only).",
		Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() pipeline.Element { return &funcElem{} }})
}

// Batch is one batch a source hands the graph.
type Batch struct {
	Now   int64  // the batch clock (pipeline.Batch.Now)
	Input string // the input of the element it goes to; "" is port 0
	Pkts  []*pipeline.Packet
}

// Loop connects output From of the element back to its input To through
// Func, which stands in for the element that would sit there (MaglevSelect
// between ConnTrack's miss and learn). A nil Func passes packets unchanged.
type Loop struct {
	From, To string
	Func     func(*pipeline.Packet)
}

// Options configure the graph around the element under test.
type Options struct {
	// Configure applies the element's configuration, as its HCL body
	// would; nil keeps the defaults New set.
	Configure func(pipeline.Element) error
	// AttrRanges says where each attribute is set, so that Build can
	// blame one (see pipeline.ElementDecl).
	AttrRanges pipeline.AttrRanges
	// Values are handed to the element through Context.Value.
	Values map[any]any
	// Workers is how many copies of the graph run; 0 means 1.
	Workers int
	// Loops are outputs fed back to inputs; those ports get no TestSink
	// or TestSource.
	Loops []Loop
}

// Harness is a started graph around one element. Push, PushTo and Run are
// called from the test's goroutine; Stats may be called from any.
type Harness struct {
	t       testing.TB
	typ     *pipeline.ElementType
	rt      *pipeline.Runtime
	sources map[string]int // input port -> index in Instance sources
	sinks   []string       // output ports that end in a TestSink
}

// New is Start, failing the test on an error.
func New(t testing.TB, elementType string, o Options) *Harness {
	t.Helper()
	h, err := Start(t, elementType, o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Start builds and starts the graph: the element, a TestSource on each of
// its inputs, a TestSink on each of its outputs (both named by the port),
// and the loops. A Build error is returned as pipeline.Errors. The graph is
// closed when the test ends.
func Start(t testing.TB, elementType string, o Options) (*Harness, error) {
	typ, ok := pipeline.Lookup(elementType)
	if !ok {
		return nil, fmt.Errorf("pipelinetest: no element type %q", elementType)
	}
	h := &Harness{t: t, typ: typ, sources: map[string]int{}}
	spec := pipeline.Spec{Elements: []pipeline.ElementDecl{
		{Name: elemName, Type: elementType, Configure: o.Configure, AttrRanges: o.AttrRanges},
	}}
	connect := func(from, fromPort, to, toPort string) {
		spec.Connections = append(spec.Connections, pipeline.Connection{
			From: pipeline.Endpoint{Element: from, Port: fromPort}, To: pipeline.Endpoint{Element: to, Port: toPort}})
	}
	fed, drained := map[string]bool{}, map[string]bool{}
	for _, l := range o.Loops {
		name := "loop_" + l.From
		spec.Elements = append(spec.Elements, pipeline.ElementDecl{Name: name, Type: funcType,
			Configure: func(e pipeline.Element) error { e.(*funcElem).f = l.Func; return nil }})
		connect(elemName, l.From, name, "")
		connect(name, "", elemName, l.To)
		drained[l.From], fed[l.To] = true, true
	}
	// Sources are declared in input order, so that their index in the
	// Instance is their rank here.
	for _, in := range typ.Inputs {
		if !fed[in] {
			h.sources[in] = len(h.sources)
			spec.Elements = append(spec.Elements, pipeline.ElementDecl{Name: "src_" + in, Type: sourceType})
			connect("src_"+in, "", elemName, in)
		}
	}
	for _, out := range typ.Outputs {
		if !drained[out] {
			h.sinks = append(h.sinks, out)
			spec.Elements = append(spec.Elements, pipeline.ElementDecl{Name: "sink_" + out, Type: sinkType})
			connect(elemName, out, "sink_"+out, "")
		}
	}
	g, errs := pipeline.Build(spec)
	if errs != nil {
		return nil, errs
	}
	rt, err := g.Start(pipeline.Options{Workers: o.Workers, Values: o.Values})
	if err != nil {
		return nil, err
	}
	h.rt = rt
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Error(err)
		}
	})
	return h, nil
}

// Push processes one batch of pkts, at clock now, arriving on the
// element's input port 0, in worker 0; it returns the packets that reached
// each output's sink, by port name (ports no packet left by are absent).
func (h *Harness) Push(now int64, pkts ...*pipeline.Packet) map[string][]*pipeline.Packet {
	h.t.Helper()
	return h.PushTo("", now, pkts...)
}

// PushTo is Push on the named input.
func (h *Harness) PushTo(input string, now int64, pkts ...*pipeline.Packet) map[string][]*pipeline.Packet {
	h.t.Helper()
	src := h.sources[h.input(input)]
	if len(pkts) > pipeline.MaxBatch {
		h.t.Fatalf("pipelinetest: batch of %d packets, at most %d", len(pkts), pipeline.MaxBatch)
	}
	b := pipeline.Batch{Now: now}
	for _, p := range pkts {
		b.Add(p, 0)
	}
	inst := h.rt.Workers()[0]
	h.resetSinks(inst)
	inst.Process(src, &b)
	return h.collect(inst)
}

// Run hands each worker the batches through its TestSources and runs
// every worker concurrently until they are exhausted, as xlbd would. Worker
// 0 gets pkts themselves, the others copies (with their own frames). It
// returns what reached the sinks, by port name, worker 0's first.
func (h *Harness) Run(batches ...Batch) map[string][]*pipeline.Packet {
	h.t.Helper()
	for w, inst := range h.rt.Workers() {
		for in := range h.sources {
			inst.Element("src_" + in).(*source).script = nil
		}
		for _, b := range batches {
			s := inst.Element("src_" + h.input(b.Input)).(*source)
			if w > 0 {
				b.Pkts = cloneAll(b.Pkts)
			}
			s.script = append(s.script, b)
		}
		h.resetSinks(inst)
	}
	if err := h.rt.Run(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	return h.collect(h.rt.Workers()...)
}

// Stats returns the element's counters, summed over workers.
func (h *Harness) Stats() pipeline.ElementStats {
	for _, s := range h.rt.Stats() {
		if s.Name == elemName {
			return s
		}
	}
	panic("pipelinetest: no stats for the element under test")
}

// Element returns worker 0's instance of the element under test.
func (h *Harness) Element() pipeline.Element { return h.rt.Workers()[0].Element(elemName) }

// input returns the name of the input port name ("" for port 0), failing
// the test when there is no such port or a loop feeds it.
func (h *Harness) input(name string) string {
	h.t.Helper()
	i := h.typ.InputPort(name)
	if i < 0 {
		h.t.Fatalf("pipelinetest: %s has no input %q", h.typ.Name, name)
	}
	if _, ok := h.sources[h.typ.Inputs[i]]; !ok {
		h.t.Fatalf("pipelinetest: input %q of %s is fed by a loop", h.typ.Inputs[i], h.typ.Name)
	}
	return h.typ.Inputs[i]
}

func (h *Harness) resetSinks(inst *pipeline.Instance) {
	for _, out := range h.sinks {
		inst.Element("sink_" + out).(*sink).got = nil
	}
}

func (h *Harness) collect(insts ...*pipeline.Instance) map[string][]*pipeline.Packet {
	got := map[string][]*pipeline.Packet{}
	for _, inst := range insts {
		for _, out := range h.sinks {
			if ps := inst.Element("sink_" + out).(*sink).got; len(ps) > 0 {
				got[out] = append(got[out], ps...)
			}
		}
	}
	return got
}

// Packet returns frame copied behind pipeline.Headroom bytes, with no
// tailroom, as a source hands it to the graph: a read past the frame
// panics rather than seeing spare buffer.
func Packet(frame []byte) *pipeline.Packet {
	buf := make([]byte, pipeline.Headroom+len(frame))
	copy(buf[pipeline.Headroom:], frame)
	p := &pipeline.Packet{}
	p.SetFrame(buf, pipeline.Headroom, len(buf))
	return p
}

// clone returns a copy of p, metadata included, over a copy of its frame.
func clone(p *pipeline.Packet) *pipeline.Packet {
	buf, start, end := p.Frame()
	c := &pipeline.Packet{Owner: p.Owner, Handle: p.Handle}
	c.SetFrame(bytes.Clone(buf), start, end)
	c.Time, c.L3, c.L4, c.Flow, c.Hash = p.Time, p.L3, p.L4, p.Flow, p.Hash
	c.VIP, c.Backend, c.Epoch, c.VIPPort, c.Reason, c.OnLink = p.VIP, p.Backend, p.Epoch, p.VIPPort, p.Reason, p.OnLink
	c.Peer, c.PeerPort = p.Peer, p.PeerPort
	return c
}

func cloneAll(ps []*pipeline.Packet) []*pipeline.Packet {
	c := make([]*pipeline.Packet, len(ps))
	for i, p := range ps {
		c[i] = clone(p)
	}
	return c
}

// source hands its script to the graph, one Batch per Pull, then io.EOF.
// It lends spares (pipeline.FrameSupplier) of spareFrame bytes, a jumbo
// frame's room, from a pool made at the first Spare.
type source struct {
	script []Batch
	spares *pipeline.SparePool
}

const spareFrame = pipeline.Headroom + 9216

func (s *source) Spare() *pipeline.Packet {
	if s.spares == nil {
		s.spares = pipeline.NewSparePool(spareFrame)
	}
	return s.spares.Spare()
}

func (s *source) Pull(b *pipeline.Batch) error {
	if s.spares != nil {
		s.spares.Reset()
	}
	if len(s.script) == 0 {
		return io.EOF
	}
	next := s.script[0]
	s.script = s.script[1:]
	if len(next.Pkts) > pipeline.MaxBatch {
		return fmt.Errorf("pipelinetest: batch of %d packets, at most %d", len(next.Pkts), pipeline.MaxBatch)
	}
	b.Now = next.Now
	for _, p := range next.Pkts {
		b.Add(p, 0)
	}
	return nil
}

// sink keeps what reaches it.
type sink struct{ got []*pipeline.Packet }

func (s *sink) Push(_ int, p *pipeline.Packet) int {
	s.got = append(s.got, p)
	return pipeline.Consumed
}

type funcElem struct{ f func(*pipeline.Packet) }

func (e *funcElem) Push(_ int, p *pipeline.Packet) int {
	if e.f != nil {
		e.f(p)
	}
	return 0
}

var (
	_ pipeline.Source        = (*source)(nil)
	_ pipeline.FrameSupplier = (*source)(nil)
	_ pipeline.Pusher        = (*sink)(nil)
	_ pipeline.Pusher        = (*funcElem)(nil)
)
