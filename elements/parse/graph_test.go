package parse

import (
	"context"
	"io"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// testSource hands the frames of graphFrames to the graph in one batch.
type testSource struct{ done bool }

var graphFrames = [][]byte{synPadded, fragNeeded, qinqUDP6, laterFrag6, synPadded[:20]}

func (s *testSource) Pull(b *pipeline.Batch) error {
	if s.done {
		return io.EOF
	}
	s.done = true
	for _, f := range graphFrames {
		b.Add(packet(f), 0)
	}
	return nil
}

// testSink keeps what reaches it.
type testSink struct{ got []*pipeline.Packet }

func (s *testSink) Push(_ int, p *pipeline.Packet) int {
	s.got = append(s.got, p)
	return pipeline.Consumed
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "parseTestSource", Outputs: []string{"out"},
		New: func() pipeline.Element { return &testSource{} }})
	pipeline.Register(pipeline.ElementType{Name: "parseTestSink", Inputs: []string{"in"},
		New: func() pipeline.Element { return &testSink{} }})
}

// TestGraph runs Parse5Tuple in a graph as xlbd would: provisioned with the
// snapshot store from the context, hashing with its seed, counting.
func TestGraph(t *testing.T) {
	g, errs := pipeline.Build(pipeline.Spec{
		Elements: []pipeline.ElementDecl{
			{Name: "rx", Type: "parseTestSource"},
			{Name: "parse", Type: "Parse5Tuple"},
			{Name: "ok", Type: "parseTestSink"},
			{Name: "drop", Type: "parseTestSink"},
		},
		Connections: []pipeline.Connection{
			{From: pipeline.Endpoint{Element: "rx"}, To: pipeline.Endpoint{Element: "parse"}},
			{From: pipeline.Endpoint{Element: "parse", Port: "out"}, To: pipeline.Endpoint{Element: "ok"}},
			{From: pipeline.Endpoint{Element: "parse", Port: "bad"}, To: pipeline.Endpoint{Element: "drop"}},
		},
	})
	if errs != nil {
		t.Fatal(errs)
	}
	const seed = 99
	rt, err := g.Start(pipeline.Options{Values: snapshot.ContextValues(snapshot.NewStore(snapshot.New(1, seed, nil, nil)))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if err := rt.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	inst := rt.Workers()[0]
	ok, drop := inst.Element("ok").(*testSink), inst.Element("drop").(*testSink)
	if len(ok.got) != 4 || len(drop.got) != 1 || drop.got[0].Reason != reasonTruncatedIP {
		t.Fatalf("out %d, bad %d, want 4 and 1 truncated_ip", len(ok.got), len(drop.got))
	}
	for _, p := range ok.got {
		if p.Hash != HashFlow(seed, &p.Flow) {
			t.Errorf("flow %+v: hash %#x is not HashFlow(%d)", p.Flow, p.Hash, seed)
		}
	}
	want := map[string]uint64{"ipv4/tcp": 1, "ipv4/icmp_error": 1, "ipv6/udp": 1, "ipv6/fragment": 1}
	n := 0
	for _, s := range rt.Stats() {
		if s.Name != "parse" {
			continue
		}
		for _, m := range s.Metrics {
			if m.Name != "xlb_parse_packets_total" {
				continue
			}
			n++
			key := m.Labels[0].Value + "/" + m.Labels[1].Value
			if m.Value != want[key] {
				t.Errorf("%s{%s} = %d, want %d", m.Name, key, m.Value, want[key])
			}
		}
	}
	if n != 2*numClasses {
		t.Errorf("%d xlb_parse_packets_total series, want %d", n, 2*numClasses)
	}
}
