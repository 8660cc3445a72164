package nat

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/conntrack"
	"github.com/xlbproject/xlb/elements/internal/csum/csumtest"
	"github.com/xlbproject/xlb/pipeline"
)

// natWorker is worker w of a graph of n: Parse5Tuple, a real ConnTrack
// and NAT, over a shared snapshot store, as the engine provisions them.
type natWorker struct {
	parse, ct pipeline.Pusher
	elems     []pipeline.Element // in graph order
	nat       *NAT
	snap      *snapshot.Store
	pkt       pipeline.Packet
}

func newNATWorker(t testing.TB, st *snapshot.Store, w, n int) (*natWorker, error) {
	t.Helper()
	ctx := pipeline.NewContext("parse", w, n, snapshot.ContextValues(st))
	h := &natWorker{snap: st}
	for _, name := range []string{"Parse5Tuple", "ConnTrack"} {
		typ, _ := pipeline.Lookup(name)
		e := typ.New()
		if ct, ok := e.(*conntrack.ConnTrack); ok {
			ctx.Name = "ct"
			ct.Capacity = 1024 // not the default's 70 MB, faulted in by the sweep
		}
		if err := e.(pipeline.Provisioner).Provision(ctx); err != nil {
			t.Fatal(err)
		}
		h.elems = append(h.elems, e)
	}
	h.parse, h.ct = h.elems[0].(pipeline.Pusher), h.elems[1].(pipeline.Pusher)
	ctx.Name = "nat"
	h.nat = &NAT{ConnTrack: "ct", Ports: map[string]int{"be2": 8080, "be6": 8443}}
	h.elems = append(h.elems, h.nat)
	t.Cleanup(func() { h.nat.Cleanup() })
	return h, h.nat.Provision(ctx)
}

// twoNATWorkers is newNATWorker for both workers of a graph of two over
// st, failing tb when either cannot start.
func twoNATWorkers(tb testing.TB, st *snapshot.Store) [2]*natWorker {
	tb.Helper()
	var w [2]*natWorker
	for i := range w {
		var err error
		if w[i], err = newNATWorker(tb, st, i, 2); err != nil {
			tb.Fatalf("worker %d: %v", i, err)
		}
	}
	return w
}

// push runs frame through the worker as one batch: parse, ct (a miss
// learns real id, as MaglevSelect would) and NAT. port is where it left
// NAT, -1 for a drop before it (p.Reason says why).
func (h *natWorker) push(frame []byte, id uint32) (*pipeline.Packet, int) {
	p := &h.pkt
	*p = pipeline.Packet{}
	p.SetFrame(frame, 0, len(frame))
	h.nat.view.StartBatch(0)
	defer h.nat.view.EndBatch()
	for _, e := range h.elems {
		e.(pipeline.BatchStarter).StartBatch(0)
	}
	defer func() {
		for _, e := range h.elems {
			if be, ok := e.(pipeline.BatchEnder); ok {
				be.EndBatch()
			}
		}
	}()
	if !throughCT(h.parse, h.ct, p, h.snap.Load(), id) {
		return p, -1
	}
	return p, h.nat.Push(0, p)
}

// stateless is the worker's xlb_nat_reply_stateless_total.
func (h *natWorker) stateless() uint64 {
	var v uint64
	h.nat.Stats(func(m pipeline.Metric) {
		if m.Name == "xlb_nat_reply_stateless_total" {
			v = m.Value
		}
	})
	return v
}

// ambiguousSnapshot is testSnapshot with a VIP api4 on be2 too: be2's
// endpoint 10.0.0.22:8080/tcp then serves web4:80 and api4:80.
func ambiguousSnapshot() *snapshot.Snapshot {
	s := testSnapshot()
	vips := append(s.VIPs[:len(s.VIPs):len(s.VIPs)], snapshot.VIP{Name: "api4", Addr: vip4.Next(), Proto: 6, Ports: []uint16{80}, Reals: []uint32{4}})
	reals := []snapshot.Real{{}}
	for id := uint32(1); id < uint32(s.Reals.Len()); id++ {
		reals = append(reals, *s.Reals.At(id))
	}
	reals = append(reals, testReal(4, 2, "be2", "10.0.0.22"))
	return snapshot.New(2, 42, vips, reals)
}

// TestStatelessTwoWorkers: NAT runs two workers. A reply that reaches the
// worker that did not see its flow (its own RX queue's) misses that
// worker's ConnTrack and is translated from its backend endpoint alone,
// as the flow's worker translates it from its reply entry, and counted in
// xlb_nat_reply_stateless_total. Once a snapshot makes the endpoint
// ambiguous (a reload: the graph keeps running), the other worker drops
// its reply as conntrack.reply_unknown, the flow's worker still
// translates it, and worker 0 logs the endpoint once.
func TestStatelessTwoWorkers(t *testing.T) {
	st := snapshot.NewStore(testSnapshot())
	w := twoNATWorkers(t, st)
	var logs bytes.Buffer
	w[0].nat.log = slog.New(slog.NewTextHandler(&logs, nil))
	fwd := tcpTo(4, vip4.AsSlice(), 40000, 80)
	rep := frame(net.IP{10, 0, 0, 22}, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, SYN: true, ACK: true, Window: 512})
	if _, port := w[0].push(append([]byte(nil), fwd...), realMapped); port != portOut {
		t.Fatalf("flow's packet: port %d", port)
	}
	reply := func(h *natWorker) (*pipeline.Packet, int) {
		return h.push(append([]byte(nil), rep...), 0)
	}
	for i, h := range w {
		p, port := reply(h)
		src, dst := endpoints(t, p.Data())
		if port != portOut || src != "192.0.2.10:80" || dst != "203.0.113.7:40000" || p.Flow.Flags&pipeline.FlowReply == 0 {
			t.Errorf("worker %d: reply left by %d (%v) as %s -> %s, want translated from 192.0.2.10:80", i, port, p.Reason, src, dst)
		}
	}
	if a, b := w[0].stateless(), w[1].stateless(); a != 0 || b != 1 {
		t.Errorf("stateless translations: flow's worker %d, other %d; want 0 and 1", a, b)
	}

	st.Publish(ambiguousSnapshot())
	if p, port := reply(w[1]); port != -1 || p.Reason.String() != "conntrack.reply_unknown" {
		t.Errorf("ambiguous endpoint, other worker: port %d reason %v, want conntrack.reply_unknown", port, p.Reason)
	}
	// The flow's own packet refreshes its reply entry for the new
	// snapshot, as every packet does.
	w[0].push(append([]byte(nil), fwd...), realMapped)
	if p, port := reply(w[0]); port != portOut {
		t.Errorf("ambiguous endpoint, flow's worker: port %d reason %v, want translated by its reply entry", port, p.Reason)
	}
	if !strings.Contains(logs.String(), "10.0.0.22:8080/tcp serves web4 (192.0.2.10:80) and api4 (192.0.2.11:80)") || strings.Count(logs.String(), "level=ERROR") != 1 {
		t.Errorf("worker 0 logged:\n%s", logs.String())
	}
}

// TestStatelessWorkersRefused: with two workers, NAT refuses a snapshot
// with an ambiguous endpoint, naming it and both VIP endpoints; with one
// it runs (reply entries translate). FullNAT refuses two workers.
func TestStatelessWorkersRefused(t *testing.T) {
	_, err := newNATWorker(t, snapshot.NewStore(ambiguousSnapshot()), 0, 2)
	if err == nil || !strings.Contains(err.Error(), "10.0.0.22:8080/tcp serves web4 (192.0.2.10:80) and api4 (192.0.2.11:80)") {
		t.Errorf("two workers, ambiguous endpoint: %v", err)
	}
	if _, err := newNATWorker(t, snapshot.NewStore(ambiguousSnapshot()), 0, 1); err != nil {
		t.Errorf("one worker, ambiguous endpoint: %v", err)
	}
	ctx := pipeline.NewContext("fnat", 0, 2, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	if err := (&FullNAT{ConnTrack: "ct", SourcePool: []string{pool4.String()}}).Provision(ctx); err == nil || !strings.Contains(err.Error(), "one worker") {
		t.Errorf("FullNAT with 2 workers: %v", err)
	}
}

// TestStatelessMap: the map holds every real whatever its state (a down
// or draining real's flows still have replies coming), under its mapped
// port for TCP and UDP and its VIP's protocols (both for a VIP of any
// protocol); a real of the other family than its VIP has none, and an
// endpoint of two VIP endpoints is ambiguous.
func TestStatelessMap(t *testing.T) {
	s := testSnapshot()
	reals := []snapshot.Real{{}}
	for id := uint32(1); id < uint32(s.Reals.Len()); id++ {
		reals = append(reals, *s.Reals.At(id))
	}
	reals[realKeep].State = snapshot.Down
	reals[realMapped].State = snapshot.Draining
	// be1 in web6 too: of the other family, never sent to.
	reals = append(reals, testReal(4, 1, "be1", "10.0.0.21"))
	s = snapshot.New(1, 42, s.VIPs, reals)
	e := &NAT{}
	e.ports = make([]uint16, 5)
	e.ports[realMapped], e.ports[realV6] = 8080, 8443
	e.adoptReplies(s)
	ep := func(a string, port uint16, proto uint8) endpoint {
		return endpoint{addr: netipAs16(a), port: port, proto: proto}
	}
	want := map[endpoint]statelessReply{
		ep("10.0.0.21", 80, protoTCP):        {vip: 0, real: realKeep, epoch: epoch, vport: 80},
		ep("10.0.0.22", 8080, protoTCP):      {vip: 0, real: realMapped, epoch: epoch, vport: 80},
		ep("2001:db8:1::23", 8443, protoTCP): {vip: 1, real: realV6, epoch: epoch, vport: 80},
		ep("2001:db8:1::23", 8443, protoUDP): {vip: 1, real: realV6, epoch: epoch, vport: 80},
	}
	got := e.stateless.replies
	if len(got) != len(want) {
		t.Errorf("%d endpoints, want %d: %v", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: %+v, want %+v", k, got[k], v)
		}
	}
	if len(e.stateless.ambiguous) != 0 {
		t.Errorf("ambiguous: %v", e.stateless.ambiguous)
	}
	e.ports[4] = 8080 // be2's, in api4
	e.adoptReplies(ambiguousSnapshot())
	if r := e.stateless.replies[ep("10.0.0.22", 8080, protoTCP)]; !r.ambiguous || len(e.stateless.ambiguous) != 1 {
		t.Errorf("ambiguous endpoint: %+v, %v", r, e.stateless.ambiguous)
	}
}

func netipAs16(a string) [16]byte {
	ip := net.ParseIP(a)
	var b [16]byte
	copy(b[:], ip.To16())
	return b
}

// TestStatelessZeroAllocs: a reply translated statelessly allocates
// nothing.
func TestStatelessZeroAllocs(t *testing.T) {
	h, err := newNATWorker(t, snapshot.NewStore(testSnapshot()), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	rep := frame(net.IP{10, 0, 0, 22}, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, ACK: true})
	buf := make([]byte, len(rep))
	if n := testing.AllocsPerRun(1000, func() {
		copy(buf, rep)
		if _, port := h.push(buf, 0); port != portOut {
			t.Fatal("reply not translated")
		}
	}); n != 0 {
		t.Errorf("%v allocations per reply", n)
	}
	if err := csumtest.Check(buf); err != nil {
		t.Error(err)
	}
}

// BenchmarkReply measures a reply through Parse5Tuple, ConnTrack and NAT,
// one packet a batch: "entry" on its flow's worker (a reply entry's hit),
// "stateless" on the other worker (a miss, the VIP look-up, then the
// stateless map's).
func BenchmarkReply(b *testing.B) {
	w := twoNATWorkers(b, snapshot.NewStore(testSnapshot()))
	fwd := tcpTo(4, vip4.AsSlice(), 40000, 80)
	w[0].push(append([]byte(nil), fwd...), realMapped)
	rep := frame(net.IP{10, 0, 0, 22}, client[4], &layers.TCP{SrcPort: 8080, DstPort: 40000, ACK: true})
	for i, name := range []string{"entry", "stateless"} {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, len(rep))
			b.ReportAllocs()
			for range b.N {
				copy(buf, rep)
				if _, port := w[i].push(buf, 0); port != portOut {
					b.Fatal("reply not translated")
				}
			}
		})
	}
}
