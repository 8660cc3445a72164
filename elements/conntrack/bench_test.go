package conntrack

import (
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// benchFlows drives c with one packet per op over a space of flows (a
// power of two), in pseudo-random order, in batches of MaxBatch as the
// engine would. Each op rewrites the packet's flow and hash in place, which
// costs a few ns and no memory traffic, instead of reading 1M precomputed
// packets that would compete with the table for cache.
func benchFlows(b *testing.B, c *ConnTrack, in int, flows int) {
	p := newPacket(flowN(0, 6, 80), 0)
	now := t0
	start(c, now)
	x := uint64(88172645463325252)
	n := 0
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		// xorshift64: a random walk over the flow space.
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		i := int(x) & (flows - 1)
		setFlow(p, i)
		if c.Push(in, p) == outHit {
			hits++
		}
		if n++; n == pipeline.MaxBatch {
			n = 0
			end(c)
			now += 1000
			start(c, now)
		}
	}
	end(c)
	b.ReportMetric(float64(hits)/float64(b.N), "hits/op")
}

// setFlow makes p a packet of flow i (as flowN, without allocating).
func setFlow(p *pipeline.Packet, i int) {
	p.Flow.Src[12], p.Flow.Src[13], p.Flow.Src[14], p.Flow.Src[15] = 198, byte(i>>24), byte(i>>16), byte(i>>8)
	p.Flow.SrcPort = uint16(i)
	p.Hash = mix(uint64(i))
	p.VIP, p.Backend, p.Epoch = 0, uint32(i&3), 1
}

// learnAll learns flows 0..n-1.
func learnAll(c *ConnTrack, n int) {
	p := newPacket(flowN(0, 6, 80), 0)
	start(c, t0)
	for i := range n {
		setFlow(p, i)
		c.Push(inLearn, p)
	}
	end(c)
}

func BenchmarkConnTrack(b *testing.B) {
	st := snapshot.NewStore(mkSnap(1, fourReals()...))

	// A few hot flows: the table stays in L1, this is the code path's cost.
	b.Run("hit", func(b *testing.B) {
		c := newCT(b, st, nil)
		learnAll(c, 16)
		benchFlows(b, c, inLookup, 16)
	})

	// 1M active flows looked up at random: memory-bound, two cache misses
	// (bucket header, entry) per packet. The table holds 2M so that nearly
	// every flow stays resident (buckets are at half load).
	b.Run("hit-1M", func(b *testing.B) {
		c := newCT(b, st, func(c *ConnTrack) { c.Capacity = 2 << 20 })
		learnAll(c, 1<<20)
		benchFlows(b, c, inLookup, 1<<20)
	})

	// New flows into a default-size table, 4M flow space: most learns
	// evict the least recently seen way of a full bucket.
	b.Run("learn", func(b *testing.B) {
		c := newCT(b, st, nil)
		benchFlows(b, c, inLearn, 4<<20)
	})
}
