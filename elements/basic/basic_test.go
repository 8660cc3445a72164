package basic

import (
	"testing"

	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

var (
	reasonA = pipeline.NewReason("basictest.a")
	reasonB = pipeline.NewReason("basictest.b")
)

// recorder is a FrameOwner that counts recycled packets.
type recorder struct{ n int }

func (r *recorder) Recycle(*pipeline.Packet) { r.n++ }

func newPacket(owner pipeline.FrameOwner, n int, reason pipeline.Reason) *pipeline.Packet {
	p := &pipeline.Packet{Owner: owner}
	p.SetFrame(make([]byte, pipeline.Headroom+n), pipeline.Headroom, pipeline.Headroom+n)
	p.Reason = reason
	return p
}

func metrics(s pipeline.StatsReporter) map[string]uint64 {
	m := map[string]uint64{}
	s.Stats(func(x pipeline.Metric) { m[x.Name] += x.Value })
	return m
}

func TestDiscardCountsByReason(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]pipeline.Reason
		want    map[string]uint64
	}{
		{"empty", nil, map[string]uint64{}},
		{"one reason", [][]pipeline.Reason{{reasonA, reasonA}},
			map[string]uint64{"xlb_drop_packets_total{element=elem}{reason=basictest.a}": 2}},
		{"mixed over batches", [][]pipeline.Reason{{reasonA, reasonB, reasonA}, {reasonB}, {pipeline.ReasonNone}},
			map[string]uint64{
				"xlb_drop_packets_total{element=elem}{reason=basictest.a}": 2,
				"xlb_drop_packets_total{element=elem}{reason=basictest.b}": 2,
				"xlb_drop_packets_total{element=elem}{reason=unspecified}": 1,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := pipelinetest.New(t, "Discard", pipelinetest.Options{})
			rec := &recorder{}
			total := 0
			for _, batch := range tt.batches {
				var pkts []*pipeline.Packet
				for _, r := range batch {
					pkts = append(pkts, newPacket(rec, 60, r))
				}
				h.Push(0, pkts...)
				total += len(batch)
			}
			if rec.n != total {
				t.Errorf("recycled %d packets, want %d", rec.n, total)
			}
			s := h.Stats()
			if s.Dropped != uint64(total) || s.Consumed != 0 {
				t.Errorf("dropped %d consumed %d, want %d and 0", s.Dropped, s.Consumed, total)
			}
			got := map[string]uint64{}
			for _, m := range s.Metrics {
				key := m.Name
				for _, l := range m.Labels {
					key += "{" + l.Name + "=" + l.Value + "}"
				}
				got[key] += m.Value
			}
			if len(got) != len(tt.want) {
				t.Errorf("metrics = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}

func TestCounter(t *testing.T) {
	c := &Counter{}
	for _, n := range []int{60, 1514, 100} {
		if got := c.Push(0, newPacket(nil, n, 0)); got != 0 {
			t.Fatalf("Push returned %d, want 0 (out)", got)
		}
	}
	c.EndBatch()
	c.Push(0, newPacket(nil, 26, 0))
	c.EndBatch()
	got := metrics(c)
	if got["xlb_counter_packets_total"] != 4 || got["xlb_counter_bytes_total"] != 1700 {
		t.Errorf("metrics = %v, want 4 packets and 1700 bytes", got)
	}
	if c.Packets() != 4 || c.Bytes() != 1700 {
		t.Errorf("Packets, Bytes = %d, %d; want 4, 1700", c.Packets(), c.Bytes())
	}
}

func TestNoAllocs(t *testing.T) {
	p := newPacket(&recorder{}, 60, reasonA)
	c := &Counter{}
	if a := testing.AllocsPerRun(1000, func() {
		c.Push(0, p)
		c.EndBatch()
	}); a != 0 {
		t.Errorf("Counter: %v allocs per packet, want 0", a)
	}
}

func BenchmarkCounter(b *testing.B) {
	p := newPacket(nil, 60, 0)
	c := &Counter{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Push(0, p)
		if i%pipeline.MaxBatch == 0 {
			c.EndBatch()
		}
	}
}
