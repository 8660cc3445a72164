package parse

import (
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

func flow(src, dst string, sport, dport uint16, proto uint8) pipeline.Flow {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	f := pipeline.Flow{Src: s.As16(), Dst: d.As16(), SrcPort: sport, DstPort: dport, Proto: proto, Family: 6}
	if s.Is4() {
		f.Family = 4
	}
	return f
}

// TestHashGolden pins HashFlow. Every node of a fleet and every release must
// agree on it: if this test fails, the change moves established flows to
// other backends during a rolling upgrade. Do not update the vectors unless
// that is intended and announced.
func TestHashGolden(t *testing.T) {
	tests := []struct {
		seed uint64
		f    pipeline.Flow
		want uint64
	}{
		{0, pipeline.Flow{}, 0x1915ea75b4b6e260},
		// synPadded's flow, spelled out: 203.0.113.7:40000 -> 198.51.100.10:443 TCP.
		{0x5eed, pipeline.Flow{
			Src:     [16]byte{10: 0xff, 11: 0xff, 12: 203, 13: 0, 14: 113, 15: 7},
			Dst:     [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: 10},
			SrcPort: 40000, DstPort: 443, Proto: 6, Family: 4,
		}, 0x0fcef558c35af579},
		{0, flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP), 0x747883efa7a264da},
		{1, flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP), 0x81f614abab1bae4a},
		{0x0123456789abcdef, flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP), 0xf17be11490c1fdbd},
		{0x0123456789abcdef, flow("192.0.2.1", "198.51.100.10", 53, 53, protoUDP), 0xdfde70f2b97a90ed},
		{0x0123456789abcdef, flow("192.0.2.1", "198.51.100.10", 0, 0, protoICMP), 0x41caa9df48674145},
		{0x0123456789abcdef, flow("2001:db8::1", "2001:db8:ffff::10", 40000, 443, protoTCP), 0xd2769d13b396f5dc},
		{0x0123456789abcdef, flow("2001:db8::1", "2001:db8:ffff::10", 0, 0, protoUDP), 0xed19a6d9564098c0},
		{^uint64(0), flow("2001:db8::1", "2001:db8:ffff::10", 65535, 65535, 255), 0xa72bde92d174b63f},
	}
	for i, tt := range tests {
		if got := HashFlow(tt.seed, &tt.f); got != tt.want {
			t.Errorf("vector %d: HashFlow(%#x, %+v) = %#016x, want %#016x", i, tt.seed, tt.f, got, tt.want)
		}
	}
}

// TestHashSeedMatters checks that the seed keys the hash: the same flow
// under different seeds, including neighbouring ones, hashes differently.
func TestHashSeedMatters(t *testing.T) {
	flows := []pipeline.Flow{
		{},
		flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP),
		flow("2001:db8::1", "2001:db8:ffff::10", 40000, 443, protoTCP),
	}
	seeds := []uint64{0, 1, 2, 3, 1 << 32, 1 << 63, ^uint64(0), 0xa0761d6478bd642f, 0xe7037ed1a0b428db}
	for _, f := range flows {
		seen := map[uint64]uint64{}
		for _, s := range seeds {
			h := HashFlow(s, &f)
			if prev, dup := seen[h]; dup {
				t.Errorf("flow %+v: seeds %#x and %#x both hash to %#x", f, prev, s, h)
			}
			seen[h] = s
		}
	}
}

// TestHashFields checks which fields the hash covers: every 5-tuple field,
// in its position (swapping source and destination changes the hash), and
// not Family or Flags (an ICMP error's reversed inner flow must hash like
// the flow it quotes).
func TestHashFields(t *testing.T) {
	const seed = 42
	base := flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP)
	h := HashFlow(seed, &base)
	differ := map[string]func(f *pipeline.Flow){
		"src":     func(f *pipeline.Flow) { f.Src[15]++ },
		"dst":     func(f *pipeline.Flow) { f.Dst[15]++ },
		"sport":   func(f *pipeline.Flow) { f.SrcPort++ },
		"dport":   func(f *pipeline.Flow) { f.DstPort++ },
		"proto":   func(f *pipeline.Flow) { f.Proto = protoUDP },
		"swap":    func(f *pipeline.Flow) { f.Src, f.Dst, f.SrcPort, f.DstPort = f.Dst, f.Src, f.DstPort, f.SrcPort },
		"ports":   func(f *pipeline.Flow) { f.SrcPort, f.DstPort = f.DstPort, f.SrcPort },
		"address": func(f *pipeline.Flow) { f.Src, f.Dst = f.Dst, f.Src },
	}
	for name, mod := range differ {
		f := base
		mod(&f)
		if HashFlow(seed, &f) == h {
			t.Errorf("changing %s does not change the hash", name)
		}
	}
	f := base
	f.Family, f.Flags = 6, pipeline.FlowICMPError|pipeline.FlowFragment
	if HashFlow(seed, &f) != h {
		t.Errorf("Family and Flags change the hash")
	}
}

// randomFlow returns an IPv4 (mapped) or IPv6 flow with random fields.
func randomFlow(r *rand.Rand) pipeline.Flow {
	var f pipeline.Flow
	for i := 0; i < 16; i += 8 {
		putLE64(f.Src[i:], r.Uint64())
		putLE64(f.Dst[i:], r.Uint64())
	}
	if r.IntN(2) == 0 {
		f.Src = netip.AddrFrom4([4]byte(f.Src[:4])).As16()
		f.Dst = netip.AddrFrom4([4]byte(f.Dst[:4])).As16()
	}
	f.SrcPort, f.DstPort, f.Proto = uint16(r.Uint32()), uint16(r.Uint32()), uint8(r.Uint32())
	return f
}

func putLE64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// flipBit flips input bit i of the 5-tuple: 0-127 Src, 128-255 Dst, then
// SrcPort, DstPort and Proto.
func flipBit(f *pipeline.Flow, i int) {
	switch {
	case i < 128:
		f.Src[i/8] ^= 1 << (i % 8)
	case i < 256:
		f.Dst[(i-128)/8] ^= 1 << (i % 8)
	case i < 272:
		f.SrcPort ^= 1 << (i - 256)
	case i < 288:
		f.DstPort ^= 1 << (i - 272)
	default:
		f.Proto ^= 1 << (i - 288)
	}
}

// TestHashAvalanche checks the strict avalanche criterion: flipping any one
// input bit flips every output bit with probability close to 1/2. A hash
// that leaves some output bits (the low ones, used for table buckets, or
// the high ones, which dominate a Maglev reduction) correlated with some
// input bits fails here.
func TestHashAvalanche(t *testing.T) {
	const (
		samples = 2000
		inBits  = 296
		// 0.5 ± 0.1 is over 8 standard deviations at 2000 samples.
		lo, hi = samples * 4 / 10, samples * 6 / 10
	)
	r := rand.New(rand.NewPCG(1, 2))
	var flips [inBits][64]int
	for range samples {
		seed := r.Uint64()
		f := randomFlow(r)
		h := HashFlow(seed, &f)
		for i := range inBits {
			g := f
			flipBit(&g, i)
			d := h ^ HashFlow(seed, &g)
			for o := range 64 {
				flips[i][o] += int(d >> o & 1)
			}
		}
	}
	bad := 0
	for i := range inBits {
		for o := range 64 {
			if n := flips[i][o]; n < lo || n > hi {
				if bad < 10 {
					t.Errorf("input bit %d flips output bit %d in %d of %d samples", i, o, n, samples)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d (input, output) bit pairs outside [%d, %d]", bad, inBits*64, lo, hi)
	}
}

// TestHashDistribution hashes structured flow sets (one client's ports,
// a subnet of clients, IPv6 clients in one /64) into buckets by the low
// bits (conntrack), the high bits, and the remainder by a prime (a Maglev
// table size), and checks the counts against a uniform distribution with
// Pearson's chi-squared. It also checks that no two flows collide.
func TestHashDistribution(t *testing.T) {
	const n = 1 << 16
	sets := map[string]func(i int) pipeline.Flow{
		"ports": func(i int) pipeline.Flow {
			f := flow("192.0.2.1", "198.51.100.10", 0, 80, protoTCP)
			f.SrcPort = uint16(i)
			return f
		},
		"ipv4-clients": func(i int) pipeline.Flow {
			f := flow("10.0.0.0", "198.51.100.10", 40000, 443, protoTCP)
			f.Src[14], f.Src[15] = byte(i>>8), byte(i)
			return f
		},
		"ipv6-clients": func(i int) pipeline.Flow {
			f := flow("2001:db8::", "2001:db8:ffff::10", 40000, 443, protoUDP)
			f.Src[14], f.Src[15] = byte(i>>8), byte(i)
			return f
		},
		"fragments": func(i int) pipeline.Flow {
			f := flow("10.0.0.0", "198.51.100.10", 0, 0, protoUDP)
			f.Src[14], f.Src[15] = byte(i>>8), byte(i)
			return f
		},
	}
	const buckets, prime = 4096, 4093
	// Chi-squared with ~4095 degrees of freedom has a standard deviation
	// of ~90; allow 6 of them.
	const limit = 4095 + 6*91
	for name, mk := range sets {
		var low, high, mod [buckets]int
		seen := make(map[uint64]bool, n)
		for i := range n {
			f := mk(i)
			h := HashFlow(7, &f)
			if seen[h] {
				t.Errorf("%s: collision at %d", name, i)
			}
			seen[h] = true
			low[h%buckets]++
			high[h>>(64-bits.TrailingZeros(buckets))]++
			mod[h%prime]++
		}
		for what, counts := range map[string][]int{"low bits": low[:], "high bits": high[:], "mod prime": mod[:prime]} {
			if x := chi2(counts, n); x > limit {
				t.Errorf("%s, %s: chi-squared %.0f over %d buckets exceeds %d", name, what, x, len(counts), limit)
			}
		}
	}
}

func chi2(counts []int, n int) float64 {
	e := float64(n) / float64(len(counts))
	var x float64
	for _, c := range counts {
		d := float64(c) - e
		x += d * d / e
	}
	return x
}

func BenchmarkHashFlow(b *testing.B) {
	b.ReportAllocs()
	f := flow("192.0.2.1", "198.51.100.10", 40000, 80, protoTCP)
	k := newHashKey(7)
	var sink uint64
	for b.Loop() {
		sink += k.Hash(&f)
		f.SrcPort++
	}
	_ = sink
}
