package conntrack

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// testOptions runs ConnTrack in a real graph without depending on the
// parse and maglev packages: ct.miss loops back to ct.learn through
// testSelect, which stands in for MaglevSelect.
func testOptions(capacity, workers int, values map[any]any) pipelinetest.Options {
	return pipelinetest.Options{
		Configure: func(e pipeline.Element) error {
			e.(*ConnTrack).Capacity = capacity
			return nil
		},
		AttrRanges: pipeline.AttrRanges{{Name: "capacity", Range: pipeline.Range{Filename: "xlb.hcl", Start: pipeline.Pos{Line: 7, Column: 3}}}},
		Values:     values,
		Workers:    workers,
		Loops:      []pipelinetest.Loop{{From: "miss", To: "learn", Func: testSelect}},
	}
}

// testSelect picks real Hash%4 of VIP 0.
func testSelect(p *pipeline.Packet) { p.VIP, p.Backend, p.Epoch = 0, uint32(p.Hash%4), 1 }

// flows is a batch at now of the packets of flows n in from..to-1.
func flows(now int64, from, to int) pipelinetest.Batch {
	b := pipelinetest.Batch{Now: now}
	for n := from; n < to; n++ {
		b.Pkts = append(b.Pkts, newPacket(flowN(n, 6, 80), mix(uint64(n))))
	}
	return b
}

// ctStats returns ct's engine counters and metrics.
func ctStats(s pipeline.ElementStats) (in, out map[string]uint64, m map[string]uint64) {
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

func TestPipeline(t *testing.T) {
	reals := fourReals()
	st := snapshot.NewStore(mkSnap(1, reals...))
	const workers = 2
	h := pipelinetest.New(t, "ConnTrack", testOptions(1024, workers, snapshot.ContextValues(st)))

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
				h.Stats()
			}
		}
	})
	h.Run(
		flows(t0, 0, 10),        // all new: miss, learn, hit
		flows(t0+sec, 0, 15),    // 10 hits, 5 new
		flows(t0+2*sec, 10, 15), // 5 hits
	)
	close(done)
	wg.Wait()

	// Every worker ran the script on its own table.
	in, out, m := ctStats(h.Stats())
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
	b := flows(t0+3*sec, 0, 15)
	onDown := 0
	for _, p := range b.Pkts {
		if p.Hash%4 < 2 {
			onDown++
		}
	}
	h.Push(b.Now, b.Pkts...)
	if _, _, m = ctStats(h.Stats()); m["xlb_conntrack_stale_total"] != uint64(onDown) {
		t.Errorf("stale = %d, want %d (flows on the downed reals)", m["xlb_conntrack_stale_total"], onDown)
	}
}

func TestPipelineErrors(t *testing.T) {
	// Invalid configuration is reported at build time, at the attribute.
	_, err := pipelinetest.Start(t, "ConnTrack", testOptions(0, 1, nil))
	var errs pipeline.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Range.Start.Line != 7 || !strings.Contains(errs[0].Detail, "capacity must be greater than 0") {
		t.Errorf("Build with capacity 0: %v", err)
	}

	// Without a control plane there is nothing to track flows against.
	_, err = pipelinetest.Start(t, "ConnTrack", testOptions(64, 1, nil))
	if err == nil {
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
