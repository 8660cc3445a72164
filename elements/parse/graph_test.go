package parse

import (
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// TestGraph runs Parse5Tuple in a graph as xlbd would: provisioned with the
// snapshot store from the context, hashing with its seed, counting.
func TestGraph(t *testing.T) {
	const seed = 99
	h := pipelinetest.New(t, "Parse5Tuple", pipelinetest.Options{
		Values: snapshot.ContextValues(snapshot.NewStore(snapshot.New(1, seed, nil, nil)))})
	var pkts []*pipeline.Packet
	for _, f := range [][]byte{synPadded, fragNeeded, qinqUDP6, laterFrag6, synPadded[:20]} {
		pkts = append(pkts, pipelinetest.Packet(f))
	}
	out := h.Push(0, pkts...)
	ok, drop := out["out"], out["bad"]
	// laterFrag6's first fragment was never seen: it is held.
	if len(ok) != 3 || len(drop) != 1 || drop[0].Reason != reasonTruncatedIP {
		t.Fatalf("out %d, bad %d, want 3 and 1 (truncated_ip)", len(ok), len(drop))
	}
	hasher := h.Element().(pipeline.FlowHasher)
	for _, p := range ok {
		if p.Hash != HashFlow(seed, &p.Flow) {
			t.Errorf("flow %+v: hash %#x is not HashFlow(%d)", p.Flow, p.Hash, seed)
		}
		// What `xlbctl lookup` asks, from another goroutine.
		if got := hasher.FlowHash(&p.Flow); got != p.Hash {
			t.Errorf("flow %+v: FlowHash %#x, the packet's %#x", p.Flow, got, p.Hash)
		}
	}
	want := map[string]uint64{"ipv4/tcp": 1, "ipv4/icmp_error": 1, "ipv6/udp": 1}
	n := 0
	for _, m := range h.Stats().Metrics {
		if m.Name != "xlb_parse_packets_total" {
			continue
		}
		n++
		key := m.Labels[0].Value + "/" + m.Labels[1].Value
		if m.Value != want[key] {
			t.Errorf("%s{%s} = %d, want %d", m.Name, key, m.Value, want[key])
		}
	}
	if n != 2*numClasses {
		t.Errorf("%d xlb_parse_packets_total series, want %d", n, 2*numClasses)
	}
}
