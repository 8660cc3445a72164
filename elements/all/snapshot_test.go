package all

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Two generations of one VIP with the same two reals (same IDs and
// epochs) at other addresses, and tables that send every flow to real 0 in
// genA and to real 1 in genB. A packet whose backend was chosen in one
// generation and resolved in the other leaves for an address that neither
// generation would send it to (genB's real 0 or genA's real 1).
var (
	genVIP    = netip.MustParseAddr("192.0.2.10")
	genAAddrs = [2]netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}
	genBAddrs = [2]netip.Addr{netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12")}
	// wantDst is where a single generation sends every flow.
	wantDst = map[netip.Addr]bool{genAAddrs[0]: true, genBAddrs[1]: true}
)

func generation(gen uint64, addrs [2]netip.Addr, real uint32) *snapshot.Snapshot {
	reals := make([]snapshot.Real, 2)
	for i, a := range addrs {
		reals[i] = snapshot.Real{ID: uint32(i), Epoch: 1, Backend: fmt.Sprint("be", i), Addr: a, Addr16: a.As16(), Family: 4, Weight: 1}
	}
	table := make([]uint32, 7)
	for i := range table {
		table[i] = real
	}
	vips := []snapshot.VIP{{Name: "web", Addr: genVIP, Proto: 6, Ports: []uint16{80}, Reals: []uint32{0, 1}, Table: table}}
	return snapshot.New(gen, 42, vips, reals)
}

// flipKey is how a test hands TestFlip its store and generations.
type flipKey struct{}

type flipGens struct {
	store *snapshot.Store
	gens  [2]*snapshot.Snapshot
}

// flip publishes the other generation in its StartBatch, so that a batch
// meets a publish between the StartBatch calls of the elements declared
// before it and those declared after it. It is a source that never
// produces, so it needs no connection.
type flip struct {
	g *flipGens
	n int
}

func (f *flip) Provision(ctx *pipeline.Context) error {
	f.g = ctx.Value(flipKey{}).(*flipGens)
	return nil
}

func (f *flip) StartBatch(int64) {
	f.n++
	f.g.store.Publish(f.g.gens[f.n%2])
}

func (f *flip) Pull(*pipeline.Batch) error { return io.EOF }

// finiteReplay is a replaySource that stops after Batches batches. It
// lends spares (pipeline.FrameSupplier) for outer fragments.
type finiteReplay struct {
	replaySource
	batches int
	spares  *pipeline.SparePool
}

func (s *finiteReplay) Pull(b *pipeline.Batch) error {
	if s.batches == 0 {
		return io.EOF
	}
	s.batches--
	if s.spares != nil {
		s.spares.Reset()
	}
	return s.replaySource.Pull(b)
}

func (s *finiteReplay) Spare() *pipeline.Packet {
	if s.spares == nil {
		s.spares = pipeline.NewSparePool(max(s.stride, replayStride(nil)))
	}
	return s.spares.Spare()
}

// dstSink records the outer destination of every encapsulated packet.
type dstSink struct{ dsts []netip.Addr }

func (s *dstSink) Push(_ int, p *pipeline.Packet) int {
	d := p.Data()[p.L3:]
	s.dsts = append(s.dsts, netip.AddrFrom4([4]byte(d[16:20])))
	return pipeline.Consumed
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "TestFlip", New: func() pipeline.Element { return &flip{} }})
	pipeline.Register(pipeline.ElementType{Name: "TestFiniteReplay", Outputs: []string{"out"},
		New: func() pipeline.Element { return &finiteReplay{} }})
	pipeline.Register(pipeline.ElementType{Name: "TestDstSink", Inputs: []string{"in"},
		New: func() pipeline.Element { return &dstSink{} }})
}

// startGenerations starts the default graph with TestFlip declared
// between MaglevSelect and the encapsulation when flipper is set, so that
// StartBatch runs in the order parse, ct, sel, flip, encap. The snapshot
// store holds genA; each worker's source replays batches batches of new
// flows to the VIP.
func startGenerations(t *testing.T, flipper bool, workers, batches int) (*pipeline.Runtime, *snapshot.Store) {
	t.Helper()
	flip := ""
	if flipper {
		flip = `element "TestFlip" "flip" {}`
	}
	src := fmt.Sprintf(goldenConfig, `element "TestFiniteReplay" "rx" {}`, "GREEncap", `element "TestDstSink" "tx" {}`, flip)
	gens := &flipGens{gens: [2]*snapshot.Snapshot{generation(1, genAAddrs, 0), generation(2, genBAddrs, 1)}}
	rt, ctl := startGraph(t, "generations.hcl", src, pipeline.Options{Workers: workers, Values: map[any]any{flipKey{}: gens}})
	gens.store = ctl.Store()
	gens.store.Publish(gens.gens[0])
	frames := tcpFrames(t, 256, genVIP)
	for _, inst := range rt.Workers() {
		src := inst.Element("rx").(*finiteReplay)
		src.frames, src.rewrite, src.batches = frames, true, batches
	}
	return rt, gens.store
}

// checkGenerations checks that every packet sent reached the sink, at an
// address a single generation gives its flow.
func checkGenerations(t *testing.T, rt *pipeline.Runtime, sent int) {
	t.Helper()
	got, wrong := 0, 0
	for w, inst := range rt.Workers() {
		for i, d := range inst.Element("tx").(*dstSink).dsts {
			got++
			if !wantDst[d] {
				if wrong++; wrong <= 3 {
					t.Errorf("worker %d packet %d went to %v: its backend was chosen in one generation and resolved in another", w, i, d)
				}
			}
		}
	}
	if got != sent || wrong > 0 {
		t.Errorf("%d of %d packets were encapsulated, %d of them to a backend no single generation chose; the rest were dropped", got, sent, wrong)
	}
}

// TestOneSnapshotPerBatch: a generation published while a batch is under
// way (here by TestFlip's StartBatch, between MaglevSelect's and
// GREEncap's) takes effect at the next batch, for every element at once.
func TestOneSnapshotPerBatch(t *testing.T) {
	const batches = 8
	rt, _ := startGenerations(t, true, 1, batches)
	inst := rt.Workers()[0]
	var b pipeline.Batch
	for range batches {
		b.Reset()
		if err := inst.Element("rx").(pipeline.Source).Pull(&b); err != nil {
			t.Fatal(err)
		}
		inst.Process(0, &b)
	}
	checkGenerations(t, rt, batches*pipeline.MaxBatch)
}

// TestOneSnapshotPerBatchConcurrent: workers push batches while a
// publisher swaps the two generations as fast as it can.
func TestOneSnapshotPerBatchConcurrent(t *testing.T) {
	const workers, batches = 2, 300
	rt, store := startGenerations(t, false, workers, batches)
	a, b := generation(1, genAAddrs, 0), generation(2, genBAddrs, 1)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				store.Publish(b)
			} else {
				store.Publish(a)
			}
		}
	})
	err := rt.Run(context.Background())
	stop.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	checkGenerations(t, rt, workers*batches*pipeline.MaxBatch)
}
