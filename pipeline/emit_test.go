package pipeline

import (
	"context"
	"slices"
	"testing"
)

// tSpareSource is a tSource that lends spare packets (FrameSupplier);
// when endless, it never runs out (it lends its pool again), so that only
// the engine bounds what a batch gets.
type tSpareSource struct {
	tSource
	pool    *SparePool
	endless bool
}

func (s *tSpareSource) Pull(b *Batch) error {
	s.pool.Reset()
	return s.tSource.Pull(b)
}

func (s *tSpareSource) Spare() *Packet {
	p := s.pool.Spare()
	if p == nil && s.endless {
		s.pool.Reset()
		p = s.pool.Spare()
	}
	return p
}

var reasonNoSpare = NewReason("pipelinetest.nospare")

// tDouble emits Extra spares ahead of each packet, their byte the packet's
// plus 100 (plus 200 for a second), and drops the packet when a spare is
// missing.
type tDouble struct {
	Extra int `hcl:"extra,optional"`
	emit  *Emitter
}

func (d *tDouble) Provision(ctx *Context) error { d.emit = ctx.Emitter(); return nil }

func (d *tDouble) Push(_ int, p *Packet) int {
	for i := range d.Extra {
		s := d.emit.Spare()
		if s == nil {
			p.Reason = reasonNoSpare
			return Drop
		}
		s.Extend(1)[0] = p.Data()[0] + byte(100*(i+1))
		if !d.emit.Emit(0, s) {
			s.Recycle()
		}
	}
	return 0
}

// tRecord keeps the first byte of every packet it consumes, in a slice
// allocated once.
type tRecord struct{ got []byte }

func (r *tRecord) Push(_ int, p *Packet) int {
	r.got = append(r.got, p.Data()[0])
	return Consumed
}

func init() {
	Register(ElementType{Name: "TSpareSource", Outputs: []string{"out"},
		New: func() Element {
			return &tSpareSource{tSource: tSource{Count: MaxBatch, Batch: MaxBatch}, pool: NewSparePool(Headroom + 64)}
		}})
	Register(ElementType{Name: "TDouble", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return &tDouble{Extra: 1} }})
	Register(ElementType{Name: "TRecord", Inputs: []string{"in"}, New: func() Element { return &tRecord{got: make([]byte, 0, 4*MaxBatch)} }})
}

// emitSpec is src -> dbl -> pass -> rec, dbl emitting extra spares.
func emitSpec(source string, extra int) Spec {
	s := Spec{
		Elements:    []ElementDecl{decl("src", source, 1), decl("dbl", "TDouble", 2), decl("pass", "TPass", 3), decl("rec", "TRecord", 4)},
		Connections: []Connection{conn("src", "dbl", 5), conn("dbl", "pass", 6), conn("pass", "rec", 7)},
	}
	s.Elements[1].Configure = func(e Element) error { e.(*tDouble).Extra = extra; return nil }
	return s
}

func runEmit(t *testing.T, source string, extra int) (got []byte, stats map[string]ElementStats) {
	t.Helper()
	rt := startSpec(t, emitSpec(source, extra), Options{})
	if s, ok := rt.Workers()[0].Element("src").(*tSpareSource); ok {
		s.endless = true
	}
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	stats = map[string]ElementStats{}
	for _, s := range rt.Stats() {
		stats[s.Name] = s
	}
	return rt.Workers()[0].Element("rec").(*tRecord).got, stats
}

// TestEmitQueuesSpareAhead: a full batch whose every packet gets a spare
// emitted ahead of it reaches the sink whole, twice the batch, in order,
// and the engine counts the spares on the emitting element's output.
func TestEmitQueuesSpareAhead(t *testing.T) {
	got, st := runEmit(t, "TSpareSource", 1)
	var want []byte
	for i := range MaxBatch {
		want = append(want, byte(i)+100, byte(i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("sink got %v, want %v", got, want)
	}
	if d := st["dbl"]; d.In[0].Packets != MaxBatch || d.Out[0].Packets != 2*MaxBatch || d.Dropped != 0 || d.Emitted != MaxBatch {
		t.Errorf("dbl in %d out %d dropped %d emitted %d, want %d, %d, 0, %d", d.In[0].Packets, d.Out[0].Packets, d.Dropped, d.Emitted, MaxBatch, 2*MaxBatch, MaxBatch)
	}
	if r := st["rec"]; r.Consumed != 2*MaxBatch {
		t.Errorf("rec consumed %d, want %d", r.Consumed, 2*MaxBatch)
	}
}

// TestEmitBoundedPerBatch: a batch may grow by MaxBatch packets, which the
// node queues hold; an element asking for more gets nil and drops what it
// cannot emit, counted, instead of overrunning a queue. The source would
// lend more: the engine's budget refuses them.
func TestEmitBoundedPerBatch(t *testing.T) {
	got, st := runEmit(t, "TSpareSource", 2)
	// Packets 0..31 get two spares each, the budget of 64; packet 32 gets
	// none (so is dropped) and so do the rest.
	half := MaxBatch / 2
	if len(got) != 3*half {
		t.Fatalf("sink got %d packets, want %d", len(got), 3*half)
	}
	if d := st["dbl"]; d.Dropped != uint64(half) || d.Out[0].Packets != uint64(3*half) {
		t.Errorf("dbl dropped %d out %d, want %d and %d", d.Dropped, d.Out[0].Packets, half, 3*half)
	}
}

// TestEmitWithoutSupplier: a source that lends no frames makes Spare
// return nil; so does a Context made outside a graph.
func TestEmitWithoutSupplier(t *testing.T) {
	got, st := runEmit(t, "TSource", 1)
	if len(got) != 0 || st["dbl"].Dropped != 10 {
		t.Errorf("sink got %d, dbl dropped %d; want 0 and 10", len(got), st["dbl"].Dropped)
	}
	if p := NewContext("x", 0, 1, nil).Emitter().Spare(); p != nil {
		t.Error("Spare outside a graph returned a packet")
	}
}

func TestEmitDoesNotAllocate(t *testing.T) {
	rt := startSpec(t, emitSpec("TSpareSource", 1), Options{})
	inst := rt.Workers()[0]
	src := inst.Element("src").(*tSpareSource)
	rec := inst.Element("rec").(*tRecord)
	var b Batch
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		src.sent = 0
		if err := src.Pull(&b); err == nil || b.N != MaxBatch {
			t.Fatalf("pulled %d packets (%v)", b.N, err)
		}
		rec.got = rec.got[:0]
		inst.Process(0, &b)
	})
	if allocs != 0 {
		t.Errorf("a batch that emits spares allocates %.1f times, want 0", allocs)
	}
	if len(rec.got) != 2*MaxBatch {
		t.Errorf("sink got %d packets, want %d", len(rec.got), 2*MaxBatch)
	}
}

// tGreedy breaks the contract: it emits every packet it receives three
// times over, without Spare, and passes it on.
type tGreedy struct {
	emit    *Emitter
	refused int
}

func (g *tGreedy) Provision(ctx *Context) error { g.emit = ctx.Emitter(); return nil }

func (g *tGreedy) Push(_ int, p *Packet) int {
	for range 3 {
		if !g.emit.Emit(0, p) {
			g.refused++
		}
	}
	return 0
}

func init() {
	Register(ElementType{Name: "TGreedy", Inputs: []string{"in"}, Outputs: []string{"out"}, New: func() Element { return &tGreedy{} }})
}

// TestEmitQueueFull: an element that emits more than Spare lent is refused
// once the next queue is full, rather than overrunning it.
func TestEmitQueueFull(t *testing.T) {
	spec := emitSpec("TSource", 0)
	spec.Elements[1] = decl("dbl", "TGreedy", 2)
	spec.Elements[0].Configure = func(e Element) error { e.(*tSource).Count = MaxBatch; return nil }
	rt := startSpec(t, spec, Options{})
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := rt.Workers()[0].Element("dbl").(*tGreedy)
	got := rt.Workers()[0].Element("rec").(*tRecord).got
	if len(got) != 2*MaxBatch || g.refused != 4*MaxBatch-len(got) {
		t.Errorf("sink got %d, %d emits refused; want %d and %d", len(got), g.refused, 2*MaxBatch, 2*MaxBatch)
	}
}

var reasonBatchSeven = NewReason("pipelinetest.seven")

// tBatch is a BatchPusher whose Push, by a packet's byte b, emits a spare
// ahead of it (b%5 == 0), drops it (b%7 == 0) or consumes it (b%11 ==
// 0), and otherwise sends it to port (b>>Shift)&1, which PushBatch does
// for those packets and stops at the others.
type tBatch struct {
	Shift int `hcl:"shift,optional"`
	emit  *Emitter
}

func (e *tBatch) Provision(ctx *Context) error { e.emit = ctx.Emitter(); return nil }

func (e *tBatch) Push(in int, p *Packet) int {
	var port [1]uint8
	if e.PushBatch(in, []*Packet{p}, port[:]) == 1 {
		return int(port[0])
	}
	switch b := p.Data()[0]; {
	case b%7 == 0:
		p.Reason = reasonBatchSeven
		return Drop
	case b%11 == 0:
		p.Recycle()
		return Consumed
	}
	if s := e.emit.Spare(); s != nil {
		s.Extend(1)[0] = 255
		if !e.emit.Emit(0, s) {
			s.Recycle()
		}
	}
	return int(p.Data()[0]>>e.Shift) & 1
}

func (e *tBatch) PushBatch(_ int, pkts []*Packet, ports []uint8) int {
	for i, p := range pkts {
		b := p.Data()[0]
		if b%5 == 0 || b%7 == 0 || b%11 == 0 {
			return i
		}
		ports[i] = b >> e.Shift & 1
	}
	return len(pkts)
}

// tEach is tBatch without PushBatch: the engine pushes every packet.
type tEach struct{ tBatch tBatch }

func (e *tEach) Provision(ctx *Context) error { return e.tBatch.Provision(ctx) }
func (e *tEach) Push(in int, p *Packet) int   { return e.tBatch.Push(in, p) }

func init() {
	Register(ElementType{Name: "TBatch", Inputs: []string{"in"}, Outputs: []string{"even", "odd"}, New: func() Element { return &tBatch{} }})
	Register(ElementType{Name: "TEach", Inputs: []string{"in"}, Outputs: []string{"even", "odd"}, New: func() Element { return &tEach{} }})
}

// TestBatchPusherAsPush: an element's PushBatch, with Push taking what it
// stops at (emitting, dropping, consuming), sends every packet where
// Push alone would, in the same order, with the same counts, whether a
// batch's packets leave by one port (the engine queues them at once) or
// by both.
func TestBatchPusherAsPush(t *testing.T) {
	for _, shift := range []int{0, 6} {
		run := func(typ string) (even, odd []byte, st map[string]ElementStats) {
			rt := startSpec(t, Spec{
				Elements:    []ElementDecl{decl("src", "TSpareSource", 1), decl("b", typ, 2), decl("even", "TRecord", 3), decl("odd", "TRecord", 4)},
				Connections: []Connection{conn("src", "b", 5), conn("b.even", "even", 6), conn("b.odd", "odd", 7)},
			}, Options{})
			inst := rt.Workers()[0]
			src := inst.Element("src").(*tSpareSource)
			src.Count, src.endless = 4*MaxBatch, true
			switch e := inst.Element("b").(type) {
			case *tBatch:
				e.Shift = shift
			case *tEach:
				e.tBatch.Shift = shift
			}
			if err := rt.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			st = map[string]ElementStats{}
			for _, s := range rt.Stats() {
				st[s.Name] = s
			}
			return inst.Element("even").(*tRecord).got, inst.Element("odd").(*tRecord).got, st
		}
		wantEven, wantOdd, wantSt := run("TEach")
		even, odd, st := run("TBatch")
		if !slices.Equal(even, wantEven) || !slices.Equal(odd, wantOdd) {
			t.Errorf("shift %d: PushBatch sent even %v odd %v, Push even %v odd %v", shift, even, odd, wantEven, wantOdd)
		}
		b, want := st["b"], wantSt["b"]
		if b.In[0].Packets != want.In[0].Packets || b.Out[0].Packets != want.Out[0].Packets || b.Out[1].Packets != want.Out[1].Packets ||
			b.Dropped != want.Dropped || b.Consumed != want.Consumed || b.Emitted != want.Emitted || want.Dropped == 0 || want.Emitted == 0 {
			t.Errorf("shift %d: PushBatch's counts %+v, Push's %+v", shift, b, want)
		}
	}
}

// tSinkBatch is a sink with PushBatch: it records a packet's byte b and
// consumes the packet, but for b%3 == 0, which PushBatch stops at and
// Push drops.
type tSinkBatch struct{ rec tRecord }

func (s *tSinkBatch) Push(in int, p *Packet) int {
	if s.PushBatch(in, []*Packet{p}, nil) == 1 {
		return Consumed
	}
	p.Reason = reasonBatchSeven
	return Drop
}

func (s *tSinkBatch) PushBatch(_ int, pkts []*Packet, _ []uint8) int {
	for i, p := range pkts {
		if p.Data()[0]%3 == 0 {
			return i
		}
		s.rec.Push(0, p)
	}
	return len(pkts)
}

// tSinkEach is tSinkBatch without PushBatch.
type tSinkEach struct{ b tSinkBatch }

func (s *tSinkEach) Push(in int, p *Packet) int { return s.b.Push(in, p) }

func init() {
	Register(ElementType{Name: "TSinkBatch", Inputs: []string{"in"}, New: func() Element { return &tSinkBatch{} }})
	Register(ElementType{Name: "TSinkEach", Inputs: []string{"in"}, New: func() Element { return &tSinkEach{} }})
}

// TestBatchPusherSink: a sink's PushBatch consumes what it takes, which
// the engine counts as Push's Consumed: the same packets in the same
// order, the same counts, as through Push alone.
func TestBatchPusherSink(t *testing.T) {
	run := func(typ string) ([]byte, ElementStats) {
		rt := startSpec(t, Spec{
			Elements:    []ElementDecl{decl("src", "TSource", 1), decl("s", typ, 2)},
			Connections: []Connection{conn("src", "s", 3)},
		}, Options{})
		inst := rt.Workers()[0]
		inst.Element("src").(*tSource).Count = 4 * MaxBatch
		if err := rt.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		var st ElementStats
		for _, s := range rt.Stats() {
			if s.Name == "s" {
				st = s
			}
		}
		switch e := inst.Element("s").(type) {
		case *tSinkBatch:
			return e.rec.got, st
		case *tSinkEach:
			return e.b.rec.got, st
		}
		return nil, st
	}
	want, wantSt := run("TSinkEach")
	got, st := run("TSinkBatch")
	if !slices.Equal(got, want) || len(want) == 0 {
		t.Errorf("PushBatch consumed %v, Push %v", got, want)
	}
	if st.In[0].Packets != wantSt.In[0].Packets || st.Consumed != wantSt.Consumed || st.Dropped != wantSt.Dropped || wantSt.Dropped == 0 {
		t.Errorf("PushBatch's counts %+v, Push's %+v", st, wantSt)
	}
}
