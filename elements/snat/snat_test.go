package snat

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// The test snapshot: VIP web (tcp/80 on 192.0.2.10) with ranges of 1000
// ports from 1024: range 0 is be1's, 1 nobody's, 2 be2's; VIP plain on
// 192.0.2.20 has no SNAT. Reals 1 and 2 are be1 and be2 of web.
const (
	epoch1 = 3
	epoch2 = 7
)

var (
	webAddr   = netip.MustParseAddr("192.0.2.10")
	plainAddr = netip.MustParseAddr("192.0.2.20")
)

func testSnapshot() *snapshot.Snapshot {
	real := func(id, ep uint32, name, addr string) snapshot.Real {
		a := netip.MustParseAddr(addr)
		return snapshot.Real{ID: id, Epoch: ep, Backend: name, Addr: a, Addr16: a.As16(), Family: 4, Weight: 1}
	}
	web := snapshot.VIP{Name: "web", Addr: webAddr, Proto: 6, Ports: []uint16{80}, Reals: []uint32{1, 2},
		SNAT: &snapshot.SNAT{First: 1024, Size: 1000, Owners: []uint32{1, snapshot.NoReal, 2}, Service: []uint16{80}}}
	plain := snapshot.VIP{Name: "plain", Addr: plainAddr, Proto: 6, Ports: []uint16{80}, Reals: []uint32{3}}
	return snapshot.New(1, 42, []snapshot.VIP{plain, web}, []snapshot.Real{{},
		real(1, epoch1, "be1", "198.51.100.1"), real(2, epoch2, "be2", "198.51.100.2"), real(3, 1, "be3", "198.51.100.3")})
}

// newTest provisions a SNATReturn over the test snapshot, logging to log
// when not nil.
func newTest(t testing.TB, log *slog.Logger) *Return {
	t.Helper()
	ctx := pipeline.NewContext("snat", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	if log != nil {
		ctx.Logger = log
	}
	e := &Return{}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Cleanup() })
	return e
}

// push runs one packet of flow f through e in a batch of its own at time
// now.
func push(e *Return, f pipeline.Flow, now int64) (int, *pipeline.Packet) {
	p := &pipeline.Packet{Flow: f}
	e.view.StartBatch(now)
	e.StartBatch(now)
	port := e.Push(0, p)
	e.EndBatch()
	e.view.EndBatch()
	return port, p
}

func flow(dst netip.Addr, proto uint8, srcPort, dstPort uint16) pipeline.Flow {
	return pipeline.Flow{Src: netip.MustParseAddr("203.0.113.5").As16(), Dst: dst.As16(), SrcPort: srcPort, DstPort: dstPort, Proto: proto, Family: 4}
}

func TestPush(t *testing.T) {
	var logs bytes.Buffer
	e := newTest(t, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, tc := range []struct {
		name    string
		f       pipeline.Flow
		port    int
		backend uint32
		epoch   uint32
	}{
		{"first port of be1's range", flow(webAddr, 6, 80, 1024), portReply, 1, epoch1},
		{"last port of be1's range", flow(webAddr, 6, 443, 2023), portReply, 1, epoch1},
		{"be2's range", flow(webAddr, 6, 80, 3500), portReply, 2, epoch2},
		{"the service port", flow(webAddr, 6, 40000, 80), portOut, 0, 0},
		{"the range of nobody", flow(webAddr, 6, 80, 2024), portBad, 0, 0},
		{"past the last range", flow(webAddr, 6, 80, 4024), portBad, 0, 0},
		{"below the first", flow(webAddr, 6, 80, 1023), portBad, 0, 0},
		{"another protocol than the VIP's", flow(webAddr, 17, 53, 1024), portOut, 0, 0},
		{"ICMP", flow(webAddr, 1, 0, 1024), portOut, 0, 0},
		{"a VIP without SNAT", flow(plainAddr, 6, 80, 1024), portOut, 0, 0},
		{"no VIP", flow(netip.MustParseAddr("192.0.2.99"), 6, 80, 1024), portOut, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, p := push(e, tc.f, 1)
			if port != tc.port {
				t.Fatalf("port %d, want %d (reason %v)", port, tc.port, p.Reason)
			}
			switch port {
			case portReply:
				if p.Backend != tc.backend || p.Epoch != tc.epoch || p.VIP != 1 || p.Reason != pipeline.ReasonNone {
					t.Errorf("VIP %d backend %d epoch %d reason %v; want 1, %d, %d", p.VIP, p.Backend, p.Epoch, p.Reason, tc.backend, tc.epoch)
				}
			case portBad:
				if p.Reason != reasonNoRange || p.VIP != 1 {
					t.Errorf("reason %v VIP %d, want snat.norange, 1", p.Reason, p.VIP)
				}
			default:
				if p.Reason != pipeline.ReasonNone || p.Backend != 0 {
					t.Errorf("passed on with reason %v backend %d", p.Reason, p.Backend)
				}
			}
		})
	}
	var m []pipeline.Metric
	e.Stats(func(x pipeline.Metric) { m = append(m, x) })
	if len(m) != 1 || m[0].Value != 3 {
		t.Errorf("metrics %+v, want 3 replies", m)
	}
	// Three drops at time 1: one line, for the first.
	if n := strings.Count(logs.String(), "snat.norange"); n != 1 || !strings.Contains(logs.String(), "vip=web port=2024 dropped=1") {
		t.Errorf("%d lines:\n%s", n, logs.String())
	}
	// The next line comes logEvery later, with the drops since.
	push(e, flow(webAddr, 6, 80, 5000), 1+logEvery)
	if !strings.Contains(logs.String(), "port=5000 dropped=3") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestNoSNATPassesAll: without a VIP with SNAT every packet goes on.
func TestNoSNATPassesAll(t *testing.T) {
	ctx := pipeline.NewContext("snat", 0, 1, snapshot.ContextValues(snapshot.NewStore(snapshot.New(1, 0, nil, nil))))
	e := &Return{}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if port, _ := push(e, flow(webAddr, 6, 80, 1024), 1); port != portOut {
		t.Errorf("port %d without SNAT", port)
	}
}

func TestZeroAllocs(t *testing.T) {
	e := newTest(t, nil)
	flows := []pipeline.Flow{flow(webAddr, 6, 80, 1500), flow(webAddr, 6, 80, 80), flow(webAddr, 6, 80, 2500), flow(plainAddr, 6, 80, 80)}
	var p pipeline.Packet
	e.view.StartBatch(1)
	e.StartBatch(1)
	defer e.EndBatch()
	defer e.view.EndBatch()
	if n := testing.AllocsPerRun(1000, func() {
		for _, f := range flows {
			p.Flow = f
			e.Push(0, &p)
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// BenchmarkPush: a reply to a range, a packet to a service port, a packet
// to a VIP address without SNAT.
func BenchmarkPush(b *testing.B) {
	for _, c := range []struct {
		name string
		f    pipeline.Flow
	}{{"reply", flow(webAddr, 6, 80, 3500)}, {"service", flow(webAddr, 6, 80, 80)}, {"nosnat", flow(plainAddr, 6, 80, 80)}} {
		b.Run(c.name, func(b *testing.B) {
			e := newTest(b, nil)
			e.view.StartBatch(1)
			e.StartBatch(1)
			p := pipeline.Packet{Flow: c.f}
			b.ReportAllocs()
			for b.Loop() {
				e.Push(0, &p)
			}
		})
	}
}
