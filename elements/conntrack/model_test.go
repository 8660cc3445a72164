package conntrack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// model is the table as a plain map with the same rules: an entry is live
// while its idle time (in ticks) is at most its class's timeout; an entry
// hit by a packet that establishes (any but a SYN-only flow's) is
// established; a new flow whose bucket already holds `ways` live flows
// evicts the least recently seen of those not established, and is left
// untracked when all are.
type model struct {
	m         map[int]mEntry // by flow number
	synOnly   map[int]bool   // flows whose packets are all bare SYNs
	timeouts  [numClasses]int32
	evictions uint64
	untracked uint64
	hits      uint64
	misses    uint64
}

type mEntry struct {
	bucket           uint64
	real, epoch, vip uint32
	seen             uint32
	cls              uint8
	est              bool
}

func (m *model) live(e mEntry, now uint32) bool {
	return int32(now-e.seen) <= m.timeouts[e.cls]
}

func (m *model) lookup(n int, now uint32) (mEntry, bool) {
	e, ok := m.m[n]
	if !ok || !m.live(e, now) {
		delete(m.m, n)
		m.misses++
		return e, false
	}
	e.seen = now
	e.est = e.est || !m.synOnly[n]
	m.m[n] = e
	m.hits++
	return e, true
}

func (m *model) learn(n int, e mEntry, now uint32) {
	if old, ok := m.m[n]; ok && m.live(old, now) {
		e.est = old.est
		m.m[n] = e
		return
	}
	delete(m.m, n)
	oldest, count := -1, 0
	for k, o := range m.m {
		if o.bucket != e.bucket || !m.live(o, now) {
			continue
		}
		count++
		if !o.est && (oldest < 0 || o.seen < m.m[oldest].seen) {
			oldest = k
		}
	}
	if count == ways {
		if oldest < 0 {
			m.untracked++
			return
		}
		delete(m.m, oldest)
		m.evictions++
	}
	m.m[n] = e
}

// protoClass is the class of each protocol the property test uses; its
// packets carry no TCP flags, so TCP flows stay in clsTCP.
var protoClass = map[uint8]uint8{6: clsTCP, 17: clsUDP, 1: clsICMP, 47: clsOther}

// TestModel drives the table with random lookups, learns and idle periods
// and checks every answer against the model.
func TestModel(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity int
		flows    int
		// hash returns flow n's hash.
		hash func(n int, nb uint64) uint64
		// withinCapacity: no bucket ever holds more than `ways` flows, so
		// nothing may be evicted.
		withinCapacity bool
	}{
		{"within capacity", 256, 256, func(n int, nb uint64) uint64 {
			return mix(uint64(n))&^(nb-1) | uint64(n)%nb
		}, true},
		{"overflowing buckets", 64, 200, func(n int, _ uint64) uint64 { return mix(uint64(n)) }, false},
	} {
		for seed := range uint64(4) {
			t.Run(fmt.Sprintf("%s/seed%d", tc.name, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				st := snapshot.NewStore(mkSnap(1, fourReals()...))
				c := newCT(t, st, func(c *ConnTrack) { c.Capacity = tc.capacity })
				nb := uint64(len(c.buckets))
				mod := &model{m: map[int]mEntry{}, synOnly: map[int]bool{}, timeouts: c.timeouts}

				protos := []uint8{6, 17, 1, 47}
				pkts := make([]*pipeline.Packet, tc.flows)
				for n := range pkts {
					proto := protos[rng.IntN(len(protos))]
					pkts[n] = newPacket(flowN(n, proto, 80), tc.hash(n, nb))
					if proto == 6 && rng.IntN(4) == 0 {
						pkts[n].Data()[pkts[n].L4+13] = tcpSYN
						mod.synOnly[n] = true
					}
				}
				clock := uint64(t0) >> tickShift // ticks; the table keeps the low 32 bits
				for op := range 20000 {
					// Every op gets its own tick, so last-seen times never
					// tie; now and then the clock jumps by up to 40s.
					clock += 1 + uint64(rng.IntN(200))
					if rng.IntN(50) == 0 {
						clock += uint64(rng.IntN(40 << (30 - tickShift)))
					}
					now, tick := int64(clock<<tickShift), uint32(clock)
					n := rng.IntN(tc.flows)
					p := pkts[n]
					if rng.IntN(3) == 0 {
						real := uint32(rng.IntN(4))
						learn(c, p, now, 0, real, 1)
						mod.learn(n, mEntry{bucket: p.Hash & (nb - 1), real: real, epoch: 1, seen: tick, cls: protoClass[p.Flow.Proto]}, tick)
						continue
					}
					if op%997 == 0 {
						checkQueries(t, c, mod, now, tick, pkts, rng)
					}
					port := lookup(c, p, now)
					want, hit := mod.lookup(n, tick)
					if (port == outHit) != hit {
						t.Fatalf("op %d: flow %d: port %d, model says hit=%v", op, n, port, hit)
					}
					if hit && (p.VIP != want.vip || p.Backend != want.real || p.Epoch != want.epoch) {
						t.Fatalf("op %d: flow %d: got vip %d real %d epoch %d, model %+v", op, n, p.VIP, p.Backend, p.Epoch, want)
					}
				}
				m := metrics(c)
				if m["xlb_conntrack_evictions_total"] != mod.evictions || m["xlb_conntrack_untracked_total"] != mod.untracked ||
					m["xlb_conntrack_hits_total"] != mod.hits || m["xlb_conntrack_misses_total"] != mod.misses {
					t.Errorf("counters %v, model evictions %d untracked %d hits %d misses %d", m, mod.evictions, mod.untracked, mod.hits, mod.misses)
				}
				if tc.withinCapacity && mod.evictions+mod.untracked != 0 {
					t.Errorf("%d evictions within capacity", mod.evictions)
				}
				if mod.hits == 0 || mod.misses == 0 || (!tc.withinCapacity && (mod.evictions == 0 || mod.untracked == 0)) {
					t.Errorf("weak run: hits %d misses %d evictions %d untracked %d", mod.hits, mod.misses, mod.evictions, mod.untracked)
				}
			})
		}
	}
}

// checkQueries asks the table what it holds, as the admin API does from
// another goroutine, and checks the answers against the model: the live
// entries, the flows per backend (every real is Up) and a few flows'
// lookups.
func checkQueries(t *testing.T, c *ConnTrack, mod *model, now int64, tick uint32, pkts []*pipeline.Packet, rng *rand.Rand) {
	t.Helper()
	perReal := map[string]uint64{}
	for _, e := range mod.m {
		if mod.live(e, tick) {
			perReal["b"+string(rune('a'+e.real))]++
		}
	}
	var got pipeline.FlowTableStats
	serveQuery(t, c, now, func(ctx context.Context) (err error) { got, err = c.FlowTable(ctx); return err })
	var sum uint64
	for _, fc := range got.Flows {
		if fc.VIP != "web" || fc.Flows != perReal[fc.Backend] {
			t.Fatalf("flows %+v, model %v", got.Flows, perReal)
		}
		sum += fc.Flows
	}
	if got.Entries != sum || len(got.Flows) != len(perReal) || got.Capacity != uint64(len(c.buckets))*ways {
		t.Fatalf("table %+v, model %v", got, perReal)
	}
	for range 8 {
		n := rng.IntN(len(pkts))
		p := pkts[n]
		var tf pipeline.TrackedFlow
		serveQuery(t, c, now, func(ctx context.Context) (err error) { tf, err = c.TrackedFlow(ctx, &p.Flow, p.Hash); return err })
		e, ok := mod.m[n]
		live := ok && mod.live(e, tick)
		if tf.Held != live || live && (tf.VIP != "web" || tf.Backend != "b"+string(rune('a'+e.real))) {
			t.Fatalf("flow %d: %+v, model %+v live %v", n, tf, e, live)
		}
		if ok && !live && tf.Ignored != "idle" && tf.Ignored != "" {
			t.Fatalf("flow %d idle in the model: %+v", n, tf)
		}
	}
}

// serveQuery runs ask on another goroutine and plays the worker meanwhile,
// ending empty batches at now (the table does not age) until it answers.
func serveQuery(t *testing.T, c *ConnTrack, now int64, ask func(context.Context) error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- ask(context.Background()) }()
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			return
		default:
			start(c, now)
			end(c)
		}
	}
}
