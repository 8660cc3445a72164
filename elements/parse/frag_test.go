package parse

import (
	"errors"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// newFragElement is a test element with a fragment table of capacity
// datagrams and timeout.
func newFragElement(t *testing.T, capacity int, timeout string) *Parse5Tuple {
	t.Helper()
	e := &Parse5Tuple{view: snapshot.NewView(snapshot.NewStore(snapshot.New(1, testSeed, nil, nil))),
		FragCapacity: capacity, FragTimeout: timeout}
	if err := e.setup(testSeed); err != nil {
		t.Fatal(err)
	}
	return e
}

// batchAt starts a batch at now (ns), as the engine does.
func batchAt(e *Parse5Tuple, now int64) {
	e.view.StartBatch(now)
	e.StartBatch(now)
}

// fragStats ends the batch and returns the fragment table's counters by
// event.
func fragStats(e *Parse5Tuple) map[string]uint64 {
	e.EndBatch()
	m := map[string]uint64{}
	e.Stats(func(x pipeline.Metric) { m[x.Name] = x.Value })
	return map[string]uint64{
		"recorded": m["xlb_parse_fragment_table_recorded_total"],
		"followed": m["xlb_parse_fragment_table_followed_total"],
		"expired":  m["xlb_parse_fragment_table_expired_total"],
		"evicted":  m["xlb_parse_fragment_table_evicted_total"],
		"capacity": m["xlb_parse_fragment_table_capacity"],
	}
}

// firstFrag4 and laterFrag4 are the first and a later fragment of the
// UDP datagram with IPv4 ID id from client4:sport to vip4:53.
func firstFrag4(sport, id uint16) []byte {
	b := cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoUDP, 0x2000, nil, udp(sport, 53, 32), make([]byte, 16)))
	b[14+4], b[14+5] = byte(id>>8), byte(id)
	return b
}

func laterFrag4(id uint16) []byte {
	b := cat(ether(etherTypeIPv4), ipv4(client4, vip4, protoUDP, 3, nil, make([]byte, 16)))
	b[14+4], b[14+5] = byte(id>>8), byte(id)
	return b
}

// push parses frame and returns the packet and its port.
func push(e *Parse5Tuple, frame []byte) (*pipeline.Packet, int) {
	p := pipelinetest.Packet(frame)
	return p, e.Push(0, p)
}

// TestFragTableIdentification checks that the table tells datagrams of
// one 3-tuple apart by their identification: each later fragment follows
// its own first fragment's flow.
func TestFragTableIdentification(t *testing.T) {
	e := newFragElement(t, 64, "1s")
	batchAt(e, 0)
	for id := range uint16(8) {
		if _, port := push(e, firstFrag4(1000+id, id)); port != portOut {
			t.Fatalf("first fragment %d: port %d", id, port)
		}
	}
	for id := range uint16(8) {
		p, port := push(e, laterFrag4(id))
		if port != portOut || p.Flow.SrcPort != 1000+id || p.Flow.DstPort != 53 || p.Flow.Proto != protoUDP ||
			p.Flow.Flags != pipeline.FlowLaterFragment {
			t.Errorf("later fragment %d: port %d flow %+v, want out with source port %d", id, port, p.Flow, 1000+id)
		}
	}
	if _, port := push(e, laterFrag4(8)); port != portBad {
		t.Errorf("later fragment of an unknown datagram: port %d, want bad", port)
	}
	if got := fragStats(e); got["recorded"] != 8 || got["followed"] != 8 || got["expired"] != 0 || got["evicted"] != 0 {
		t.Errorf("counters %v", got)
	}
}

// TestFragTableTimeout checks that a later fragment follows its first
// fragment within frag_timeout of the last fragment seen, and is dropped
// after it.
func TestFragTableTimeout(t *testing.T) {
	e := newFragElement(t, 64, "100ms")
	const ms = int64(time.Millisecond)
	batchAt(e, 1000*ms)
	push(e, firstFrag4(1000, 1))
	push(e, firstFrag4(1001, 2))
	// 90 ms later: both live; the first datagram's entry is refreshed.
	batchAt(e, 1090*ms)
	if _, port := push(e, laterFrag4(1)); port != portOut {
		t.Fatalf("within the timeout: port %d", port)
	}
	// 180 ms after the start: datagram 2's entry is older than 100 ms,
	// datagram 1's was refreshed 90 ms ago.
	batchAt(e, 1180*ms)
	if _, port := push(e, laterFrag4(1)); port != portOut {
		t.Errorf("refreshed entry: port %d, want out", port)
	}
	p, port := push(e, laterFrag4(2))
	if port != portBad || p.Reason != reasonFragNoFirst {
		t.Errorf("after the timeout: port %d reason %v, want bad with %v", port, p.Reason, reasonFragNoFirst)
	}
	if got := fragStats(e); got["recorded"] != 2 || got["followed"] != 2 || got["expired"] != 1 {
		t.Errorf("counters %v", got)
	}
}

// TestFragTableCapacity checks that the table holds what frag_capacity
// says (rounded up to whole buckets) and that a full bucket gives its
// least recently seen datagram to a new one, counted as an eviction.
func TestFragTableCapacity(t *testing.T) {
	for _, c := range []struct{ capacity, want int }{{1, 4}, {4, 4}, {5, 8}, {4096, 4096}} {
		if got := fragStats(newFragElement(t, c.capacity, "1s"))["capacity"]; got != uint64(c.want) {
			t.Errorf("frag_capacity %d: capacity %d, want %d", c.capacity, got, c.want)
		}
	}
	// One bucket of four ways: the fifth datagram evicts the first.
	e := newFragElement(t, 4, "1s")
	for id := range uint16(5) {
		batchAt(e, int64(id)*int64(10*time.Millisecond))
		push(e, firstFrag4(1000+id, id))
	}
	if _, port := push(e, laterFrag4(0)); port != portBad {
		t.Errorf("evicted datagram: port %d, want bad", port)
	}
	for id := uint16(1); id < 5; id++ {
		if p, port := push(e, laterFrag4(id)); port != portOut || p.Flow.SrcPort != 1000+id {
			t.Errorf("datagram %d: port %d flow %+v", id, port, p.Flow)
		}
	}
	if got := fragStats(e); got["evicted"] != 1 || got["recorded"] != 5 || got["followed"] != 4 {
		t.Errorf("counters %v", got)
	}
}

// TestFragTableAllocs checks that recording and following fragments, and
// dropping orphans, allocate nothing.
func TestFragTableAllocs(t *testing.T) {
	e := newFragElement(t, 64, "1s")
	batchAt(e, 0)
	first, later, orphan := pipelinetest.Packet(firstFrag4(1000, 1)), pipelinetest.Packet(laterFrag4(1)), pipelinetest.Packet(laterFrag4(2))
	if n := testing.AllocsPerRun(100, func() {
		for _, p := range []*pipeline.Packet{first, later, orphan} {
			buf, start, end := p.Frame()
			p.SetFrame(buf, start, end)
			e.Push(0, p)
		}
	}); n != 0 {
		t.Errorf("%v allocations per datagram", n)
	}
}

func TestFragValidate(t *testing.T) {
	for _, c := range []struct {
		capacity int
		timeout  string
		attr     string
	}{
		{0, "1s", "frag_capacity"},
		{maxFragCapacity + 1, "1s", "frag_capacity"},
		{64, "soon", "frag_timeout"},
		{64, "0s", "frag_timeout"},
		{64, "31s", "frag_timeout"},
	} {
		e := &Parse5Tuple{FragCapacity: c.capacity, FragTimeout: c.timeout, FragHoldTime: defaultFragHoldTime}
		var ae *pipeline.AttrError
		if err := e.Validate(); !errors.As(err, &ae) || ae.Attr != c.attr {
			t.Errorf("capacity %d timeout %q: %v, want an error on %s", c.capacity, c.timeout, err, c.attr)
		}
	}
	for _, c := range []struct {
		hold int
		time string
		attr string
	}{
		{-1, "5ms", "frag_hold"},
		{maxFragHold + 1, "5ms", "frag_hold"},
		{64, "soon", "frag_hold_time"},
		{64, "0s", "frag_hold_time"},
		{64, "2s", "frag_hold_time"},
	} {
		e := &Parse5Tuple{FragCapacity: 64, FragTimeout: "1s", FragHold: c.hold, FragHoldTime: c.time}
		var ae *pipeline.AttrError
		if err := e.Validate(); !errors.As(err, &ae) || ae.Attr != c.attr {
			t.Errorf("hold %d for %q: %v, want an error on %s", c.hold, c.time, err, c.attr)
		}
	}
	e := &Parse5Tuple{FragCapacity: maxFragCapacity, FragTimeout: "30s", FragHold: maxFragHold, FragHoldTime: "1s"}
	if err := e.Validate(); err != nil {
		t.Errorf("the largest table and hold: %v", err)
	}
	if err := (&Parse5Tuple{FragCapacity: 64, FragTimeout: "1s", FragHoldTime: "1ms"}).Validate(); err != nil {
		t.Errorf("no hold: %v", err)
	}
}

// TestFragTableSeedChange checks that a reload changing the hash seed
// between a datagram's first and later fragments does not lose it: the
// later fragment still finds the first's flow and hash.
func TestFragTableSeedChange(t *testing.T) {
	st := snapshot.NewStore(snapshot.New(1, testSeed, nil, nil))
	e := &Parse5Tuple{view: snapshot.NewView(st), FragCapacity: 4096, FragTimeout: "1s"}
	if err := e.setup(testSeed); err != nil {
		t.Fatal(err)
	}
	batchAt(e, 0)
	first, _ := push(e, firstFrag4(1000, 1))
	st.Publish(snapshot.New(2, testSeed+1, nil, nil))
	batchAt(e, 0)
	p, port := push(e, laterFrag4(1))
	if port != portOut || p.Hash != first.Hash || p.Flow != withFlags(first.Flow, pipeline.FlowLaterFragment) {
		t.Errorf("after a seed change: port %d flow %+v hash %#x, want the first fragment's %+v %#x", port, p.Flow, p.Hash, first.Flow, first.Hash)
	}
}
