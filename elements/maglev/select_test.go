package maglev

import (
	"net/netip"
	"strings"
	"testing"

	table "github.com/xlbproject/xlb/control/maglev"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// testSnapshot has two VIPs on 10.0.0.1: "web" (tcp/80) with three reals
// and "empty" (udp/53) whose table is empty. Real 1 is an unused slot.
func testSnapshot(t testing.TB) *snapshot.Snapshot {
	t.Helper()
	bs := []table.Backend{{Name: "web-a", Weight: 1}, {Name: "web-b", Weight: 1}, {Name: "web-c", Weight: 2}}
	idx, err := table.Build(bs, 251)
	if err != nil {
		t.Fatal(err)
	}
	ids := []uint32{0, 2, 3} // real ID of bs[i]
	slots := make([]uint32, len(idx))
	for s, i := range idx {
		slots[s] = ids[i]
	}
	vip := netip.MustParseAddr("10.0.0.1")
	reals := make([]snapshot.Real, 4)
	for i, b := range bs {
		reals[ids[i]] = snapshot.Real{ID: ids[i], Epoch: uint32(7 + i), VIP: 0, Backend: b.Name, Weight: b.Weight}
	}
	return snapshot.New(1, 0, []snapshot.VIP{
		{Name: "web", Addr: vip, Proto: 6, Ports: []uint16{80}, Reals: ids, Table: slots},
		{Name: "empty", Addr: vip, Proto: 17, Ports: []uint16{53}},
	}, reals)
}

// packet returns a parsed packet as Parse5Tuple leaves it: only the fields
// MaglevSelect reads are set.
func packet(dst string, proto uint8, port uint16, hash uint64) *pipeline.Packet {
	p := &pipeline.Packet{Hash: hash}
	p.Flow.Dst = netip.MustParseAddr(dst).As16()
	p.Flow.Proto, p.Flow.DstPort = proto, port
	p.Flow.Family = 4
	return p
}

// testSelect is a Select over a view of its own, started and ended as the
// engine does a worker's view and elements.
type testSelect struct{ *Select }

func newTestSelect(st *snapshot.Store) testSelect {
	return testSelect{&Select{view: snapshot.NewView(st)}}
}

func (e testSelect) start() { e.view.StartBatch(0); e.StartBatch(0) }
func (e testSelect) end()   { e.EndBatch(); e.view.EndBatch() }

func TestSelectPush(t *testing.T) {
	snap := testSnapshot(t)
	e := newTestSelect(snapshot.NewStore(snap))
	e.start()
	web := &snap.VIPs[0]
	for _, tc := range []struct {
		name   string
		p      *pipeline.Packet
		port   int
		reason pipeline.Reason
		vip    uint32
	}{
		{"selected", packet("10.0.0.1", 6, 80, 0x1234_5678_9abc_def0), portOut, 0, 0},
		{"selected, last slot", packet("10.0.0.1", 6, 80, ^uint64(0)), portOut, 0, 0},
		{"no VIP: port", packet("10.0.0.1", 6, 81, 1), portNoBackend, reasonNoVIP, 0},
		{"no VIP: address", packet("10.0.0.2", 6, 80, 1), portNoBackend, reasonNoVIP, 0},
		{"no VIP: protocol", packet("10.0.0.1", 17, 80, 1), portNoBackend, reasonNoVIP, 0},
		{"empty table", packet("10.0.0.1", 17, 53, 1), portNoBackend, reasonNoBackend, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := e.Push(0, tc.p)
			if port != tc.port || tc.p.Reason != tc.reason {
				t.Fatalf("Push = port %d reason %v, want %d %v", port, tc.p.Reason, tc.port, tc.reason)
			}
			if port != portOut {
				return
			}
			id := web.Table[table.Slot(tc.p.Hash, len(web.Table))]
			if tc.p.VIP != tc.vip || tc.p.Backend != id || tc.p.Epoch != snap.Reals.At(id).Epoch {
				t.Fatalf("VIP %d backend %d epoch %d, want %d %d %d", tc.p.VIP, tc.p.Backend, tc.p.Epoch, tc.vip, id, snap.Reals.At(id).Epoch)
			}
			if snap.Real(tc.p.Backend, tc.p.Epoch) == nil {
				t.Fatalf("selected real %d/%d does not exist", tc.p.Backend, tc.p.Epoch)
			}
		})
	}
	e.end()
	if got := e.selected.Load(); got != 2 {
		t.Errorf("selected %d, want 2", got)
	}
}

// The snapshot is read once per batch: a publication during a batch takes
// effect at the next one.
func TestSelectSnapshotPerBatch(t *testing.T) {
	st := snapshot.NewStore(testSnapshot(t))
	e := newTestSelect(st)
	e.start()
	st.Publish(snapshot.New(2, 0, nil, nil))
	if port := e.Push(0, packet("10.0.0.1", 6, 80, 1)); port != portOut {
		t.Fatalf("within the batch: port %d, want out", port)
	}
	e.end()
	if e.snap != nil {
		t.Error("the snapshot is still referenced after the batch")
	}
	e.start()
	if p := packet("10.0.0.1", 6, 80, 1); e.Push(0, p) != portNoBackend || p.Reason != reasonNoVIP {
		t.Fatalf("next batch: reason %v, want maglev.novip", p.Reason)
	}
}

func TestSelectAllocs(t *testing.T) {
	e := newTestSelect(snapshot.NewStore(testSnapshot(t)))
	p := packet("10.0.0.1", 6, 80, 1)
	allocs := testing.AllocsPerRun(1000, func() {
		e.start()
		p.Hash = p.Hash*6364136223846793005 + 1
		e.Push(0, p)
		e.end()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet, want 0", allocs)
	}
}

func TestSelectInGraph(t *testing.T) {
	h := pipelinetest.New(t, "MaglevSelect", pipelinetest.Options{
		Values: snapshot.ContextValues(snapshot.NewStore(testSnapshot(t)))})
	out := h.Push(0, packet("10.0.0.1", 6, 80, 1), packet("10.0.0.1", 6, 80, 2), packet("10.0.0.9", 6, 80, 3))
	if ok, drop := len(out["out"]), len(out["nobackend"]); ok != 2 || drop != 1 {
		t.Fatalf("out %d, nobackend %d; want 2, 1", ok, drop)
	}
	var selections uint64
	for _, m := range h.Stats().Metrics {
		if m.Name == "xlb_maglev_selections_total" {
			selections = m.Value
		}
	}
	if selections != 2 {
		t.Fatalf("xlb_maglev_selections_total = %d, want 2", selections)
	}
}

func TestSelectNeedsStore(t *testing.T) {
	_, err := pipelinetest.Start(t, "MaglevSelect", pipelinetest.Options{})
	if err == nil || !strings.Contains(err.Error(), "no service snapshot") {
		t.Fatalf("Start without a store: %v, want the no-snapshot error", err)
	}
}

func BenchmarkMaglevSelect(b *testing.B) {
	snap := testSnapshot(b)
	e := newTestSelect(snapshot.NewStore(snap))
	var pkts [pipeline.MaxBatch]*pipeline.Packet
	for i := range pkts {
		pkts[i] = packet("10.0.0.1", 6, 80, uint64(i)*0x9e3779b97f4a7c15)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n%pipeline.MaxBatch == 0 {
			e.end()
			e.start()
		}
		e.Push(0, pkts[n%pipeline.MaxBatch])
		n++
	}
}

// TestSelectFlow: what SelectFlow answers from another goroutine is what
// Push does with a packet of the flow, for every case Push has.
func TestSelectFlow(t *testing.T) {
	snap := testSnapshot(t)
	st := snapshot.NewStore(snap)
	e := newTestSelect(st)
	e.store = st
	for i, p := range []*pipeline.Packet{
		packet("10.0.0.1", 6, 80, 0x1234_5678_9abc_def0),
		packet("10.0.0.1", 6, 80, ^uint64(0)),
		packet("10.0.0.1", 6, 80, 0),
		packet("10.0.0.1", 6, 81, 1),
		packet("10.0.0.1", 17, 53, 1),
	} {
		sel := e.SelectFlow(&p.Flow, p.Hash)
		e.start()
		port := e.Push(0, p)
		e.end()
		want := pipeline.FlowSelection{Reason: p.Reason.String()}
		switch {
		case port == portOut:
			want = pipeline.FlowSelection{VIP: "web", Backend: snap.Reals.At(p.Backend).Backend,
				Slot: int(table.Slot(p.Hash, 251)), TableSize: 251}
		case p.Reason == reasonNoBackend:
			want.VIP = "empty"
		}
		if sel != want {
			t.Errorf("packet %d: SelectFlow %+v, Push gives %+v", i, sel, want)
		}
	}
}
