package conntrack

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Test-only element types, so that ConnTrack runs in a real graph without
// depending on the parse and maglev packages:
//
//	src :: ConnTrackTestSource -> ct.lookup
//	ct.hit  -> out :: ConnTrackTestSink
//	ct.miss -> sel :: ConnTrackTestSelect -> ct.learn
func init() {
	pipeline.Register(pipeline.ElementType{
		Name: "ConnTrackTestSource", Doc: "Replays scripted batches of flows (test only).",
		Outputs: []string{"out"},
		New:     func() pipeline.Element { return &testSource{} },
	})
	pipeline.Register(pipeline.ElementType{
		Name: "ConnTrackTestSelect", Doc: "Picks real Hash%4 of VIP 0 (test only).",
		Inputs: []string{"in"}, Outputs: []string{"out"},
		New: func() pipeline.Element { return testSelect{} },
	})
	pipeline.Register(pipeline.ElementType{
		Name: "ConnTrackTestSink", Doc: "Consumes packets (test only).",
		Inputs: []string{"in"},
		New:    func() pipeline.Element { return testSink{} },
	})
}

// testBatch is a batch of flow numbers received at now.
type testBatch struct {
	now   int64
	flows []int
}

type testSource struct {
	script []testBatch
	next   int
	pkts   [pipeline.MaxBatch]*pipeline.Packet
}

func (s *testSource) Pull(b *pipeline.Batch) error {
	if s.next == len(s.script) {
		return io.EOF
	}
	tb := s.script[s.next]
	s.next++
	b.Now = tb.now
	for i, n := range tb.flows {
		if s.pkts[i] == nil {
			s.pkts[i] = &pipeline.Packet{}
		}
		p := s.pkts[i]
		p.SetFrame(make([]byte, pipeline.Headroom+frameLen), pipeline.Headroom, pipeline.Headroom+frameLen)
		p.L3, p.L4 = 14, 34
		p.Flow, p.Hash = flowN(n, 6, 80), mix(uint64(n))
		b.Add(p, 0)
	}
	return nil
}

type testSelect struct{}

func (testSelect) Push(_ int, p *pipeline.Packet) int {
	p.VIP, p.Backend, p.Epoch = 0, uint32(p.Hash%4), 1
	return 0
}

type testSink struct{}

func (testSink) Push(int, *pipeline.Packet) int { return pipeline.Consumed }

func testSpec(script []testBatch, capacity int) pipeline.Spec {
	return pipeline.Spec{
		Elements: []pipeline.ElementDecl{
			{Name: "src", Type: "ConnTrackTestSource", Configure: func(e pipeline.Element) error {
				e.(*testSource).script = script
				return nil
			}},
			{Name: "ct", Type: "ConnTrack", Configure: func(e pipeline.Element) error {
				e.(*ConnTrack).Capacity = capacity
				return nil
			}, AttrRanges: map[string]pipeline.Range{"capacity": {Filename: "xlb.hcl", Start: pipeline.Pos{Line: 7, Column: 3}}}},
			{Name: "sel", Type: "ConnTrackTestSelect"},
			{Name: "out", Type: "ConnTrackTestSink"},
		},
		Connections: []pipeline.Connection{
			{From: pipeline.Endpoint{Element: "src"}, To: pipeline.Endpoint{Element: "ct", Port: "lookup"}},
			{From: pipeline.Endpoint{Element: "ct", Port: "hit"}, To: pipeline.Endpoint{Element: "out"}},
			{From: pipeline.Endpoint{Element: "ct", Port: "miss"}, To: pipeline.Endpoint{Element: "sel"}},
			{From: pipeline.Endpoint{Element: "sel"}, To: pipeline.Endpoint{Element: "ct", Port: "learn"}},
		},
	}
}

func seq(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// ctStats returns ct's engine counters and metrics from rt.
func ctStats(t *testing.T, stats []pipeline.ElementStats) (in, out map[string]uint64, m map[string]uint64) {
	t.Helper()
	for _, s := range stats {
		if s.Name != "ct" {
			continue
		}
		in, out, m = map[string]uint64{}, map[string]uint64{}, map[string]uint64{}
		for _, p := range s.In {
			in[p.Port] = p.Packets
		}
		for _, p := range s.Out {
			out[p.Port] = p.Packets
		}
		for _, x := range s.Metrics {
			m[x.Name] = x.Value
		}
		return in, out, m
	}
	t.Fatal("no stats for ct")
	return nil, nil, nil
}

func TestPipeline(t *testing.T) {
	script := []testBatch{
		{t0, seq(0, 10)},          // all new: miss, learn, hit
		{t0 + sec, seq(0, 15)},    // 10 hits, 5 new
		{t0 + 2*sec, seq(10, 15)}, // 5 hits
	}
	g, errs := pipeline.Build(testSpec(script, 1024))
	if errs != nil {
		t.Fatal(errs)
	}
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	const workers = 2
	rt, err := g.Start(pipeline.Options{Workers: workers, Values: snapshot.ContextValues(st)})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	// Stats read concurrently with the workers: the race detector checks
	// that counters are published safely.
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				rt.Stats()
			}
		}
	})
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(done)
	wg.Wait()

	// Every worker ran the script on its own table.
	in, out, m := ctStats(t, rt.Stats())
	want := map[string]uint64{
		"in lookup": 30, "in learn": 15, "out hit": 30, "out miss": 15,
		"xlb_conntrack_hits_total": 15, "xlb_conntrack_misses_total": 15,
		"xlb_conntrack_learned_total": 15, "xlb_conntrack_entries": 15,
		"xlb_conntrack_capacity": 1024,
	}
	got := map[string]uint64{"in lookup": in["lookup"], "in learn": in["learn"], "out hit": out["hit"], "out miss": out["miss"]}
	for k := range want {
		if strings.HasPrefix(k, "xlb_") {
			got[k] = m[k]
		}
	}
	for k, v := range want {
		if got[k] != v*workers {
			t.Errorf("%s = %d, want %d", k, got[k], v*workers)
		}
	}

	// A new snapshot takes reals 0 and 1 down: worker 0's flows on them are
	// stale, reselected and learned again.
	reals[0].State, reals[1].State = snapshot.Down, snapshot.Down
	st.Publish(mkSnap(2, reals...))
	onDown := 0
	var b pipeline.Batch
	b.Now = t0 + 3*sec
	for n := range 15 {
		p := &pipeline.Packet{}
		p.SetFrame(make([]byte, pipeline.Headroom+frameLen), pipeline.Headroom, pipeline.Headroom+frameLen)
		p.Flow, p.Hash = flowN(n, 6, 80), mix(uint64(n))
		if p.Hash%4 < 2 {
			onDown++
		}
		b.Add(p, 0)
	}
	rt.Workers()[0].Process(0, &b)
	_, _, m = ctStats(t, rt.Stats())
	if m["xlb_conntrack_stale_total"] != uint64(onDown) {
		t.Errorf("stale = %d, want %d (flows on the downed reals)", m["xlb_conntrack_stale_total"], onDown)
	}
}

func TestPipelineErrors(t *testing.T) {
	// Invalid configuration is reported at build time, at the attribute.
	_, errs := pipeline.Build(testSpec(nil, 0))
	if len(errs) != 1 || errs[0].Range.Start.Line != 7 || !strings.Contains(errs[0].Detail, "capacity must be greater than 0") {
		t.Errorf("Build with capacity 0: %v", errs)
	}

	// Without a control plane there is nothing to track flows against.
	g, errs := pipeline.Build(testSpec(nil, 64))
	if errs != nil {
		t.Fatal(errs)
	}
	rt, err := g.Start(pipeline.Options{})
	if err == nil {
		rt.Close()
		t.Fatal("Start without a snapshot store succeeded")
	}
	if !strings.Contains(err.Error(), "no service snapshot") {
		t.Errorf("Start without a snapshot store: %v", err)
	}
	var c ConnTrack
	if err := c.Cleanup(); err != nil {
		t.Errorf("Cleanup of an unprovisioned ConnTrack: %v", err)
	}
}
