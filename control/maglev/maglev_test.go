package maglev

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// names returns n backends "be-0000".."be-<n-1>" with weight 1.
func names(n int) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Name: fmt.Sprintf("be-%04d", i), Weight: 1}
	}
	return bs
}

func mustBuild(t testing.TB, bs []Backend, m uint32) []uint32 {
	t.Helper()
	table, err := Build(bs, m)
	if err != nil {
		t.Fatalf("Build(%d backends, %d): %v", len(bs), m, err)
	}
	return table
}

// counts returns how many slots each backend owns.
func counts(table []uint32, n int) []int {
	c := make([]int, n)
	for _, i := range table {
		c[i]++
	}
	return c
}

// byName maps a table of indices to backend names.
func byName(table []uint32, bs []Backend) []string {
	out := make([]string, len(table))
	for s, i := range table {
		out[s] = bs[i].Name
	}
	return out
}

func TestIsPrime(t *testing.T) {
	for _, tc := range []struct {
		n    uint32
		want bool
	}{
		{0, false}, {1, false}, {2, true}, {3, true}, {4, false}, {9, false},
		{25, false}, {49, false}, {251, true}, {65536, false}, {65537, true},
		{655373, true}, {655371, false},
		{4294967291, true},     // largest 32-bit prime
		{4294967295, false},    // 3·5·17·257·65537
		{65521 * 65519, false}, // product of two large primes: needs the full trial range
	} {
		if got := IsPrime(tc.n); got != tc.want {
			t.Errorf("IsPrime(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   []Backend
		m    uint32
		want string
	}{
		{"not prime", names(3), 65536, "not a prime"},
		{"too small", names(7), 7, "greater than the number of backends"},
		{"too large", names(3), 16777259, "larger than the maximum"},
		{"duplicate name", []Backend{{"a", 1}, {"b", 1}, {"a", 2}}, 13, `"a" appears twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.bs, tc.m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Build: err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildNoBackend(t *testing.T) {
	for _, bs := range [][]Backend{nil, {{"a", 0}, {"b", 0}}} {
		table, err := Build(bs, 13)
		if err != nil || table != nil {
			t.Errorf("Build(%v) = %v, %v; want nil, nil", bs, table, err)
		}
	}
}

// With equal weights every backend owns floor(M/N) or ceil(M/N) slots
// (section 3.4: each backend takes one slot per turn until the table is
// full).
func TestEqualShares(t *testing.T) {
	for _, tc := range []struct {
		n int
		m uint32
	}{{1, 2}, {5, 13}, {12, 13}, {3, 65537}, {100, 65537}, {1000, 65537}, {1000, 655373}} {
		t.Run(fmt.Sprintf("N=%d/M=%d", tc.n, tc.m), func(t *testing.T) {
			table := mustBuild(t, names(tc.n), tc.m)
			lo, hi := int(tc.m)/tc.n, (int(tc.m)+tc.n-1)/tc.n
			for i, c := range counts(table, tc.n) {
				if c < lo || c > hi {
					t.Errorf("backend %d owns %d slots, want %d..%d", i, c, lo, hi)
				}
			}
		})
	}
}

// Shares follow weights: each backend owns M·w/ΣW slots within 0.1% of M
// (65 slots for M = 65537); weight 0 owns none.
func TestWeightedShares(t *testing.T) {
	const m = 65537
	for _, weights := range [][]uint32{
		{1, 2, 3, 4},
		{100, 100, 50, 0, 1},
		{10000, 1, 1, 1, 1, 1, 1, 1, 1, 1},
		{7, 7, 14},
	} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			bs := make([]Backend, len(weights))
			sum := 0.0
			for i, w := range weights {
				bs[i] = Backend{Name: fmt.Sprintf("w%d", i), Weight: w}
				sum += float64(w)
			}
			table := mustBuild(t, bs, m)
			for i, c := range counts(table, len(bs)) {
				want := m * float64(weights[i]) / sum
				if d := float64(c) - want; d > m*0.001 || d < -m*0.001 {
					t.Errorf("backend %d (weight %d) owns %d slots, want %.1f ± %d", i, weights[i], c, want, m/1000)
				}
				if weights[i] == 0 && c != 0 {
					t.Errorf("backend %d has weight 0 but owns %d slots", i, c)
				}
			}
		})
	}
}

// turns is the weighted population loop as the package doc describes it,
// walking every backend on every turn: the definition Build must match.
func turns(bs []Backend, m uint32) []uint32 {
	type part struct{ pos, skip, acc, w, index uint32 }
	var ps []part
	maxW := uint32(0)
	for i, b := range bs {
		if b.Weight > 0 {
			offset, skip := permutation(b.Name, m)
			ps = append(ps, part{pos: offset, skip: skip, w: b.Weight, index: uint32(i)})
			maxW = max(maxW, b.Weight)
		}
	}
	slices.SortFunc(ps, func(a, b part) int { return strings.Compare(bs[a.index].Name, bs[b.index].Name) })
	table := make([]uint32, m)
	taken := make([]bool, m)
	for filled := uint32(0); ; {
		for k := range ps {
			p := &ps[k]
			// In 64 bits: the credit may exceed 2^32 before it is paid.
			if acc := uint64(p.acc) + uint64(p.w); acc < uint64(maxW) {
				p.acc = uint32(acc)
				continue
			} else {
				p.acc = uint32(acc - uint64(maxW))
			}
			for taken[p.pos] {
				p.pos = (p.pos + p.skip) % m
			}
			taken[p.pos], table[p.pos] = true, p.index
			p.pos = (p.pos + p.skip) % m
			if filled++; filled == m {
				return table
			}
		}
	}
}

// Build takes the turns' claims in their order without walking the turns:
// the tables are the same, slot for slot, for any weights.
func TestSameAsTurns(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for run := range 300 {
		n := 1 + r.IntN(40)
		m := []uint32{13, 251, 4099, 65537}[run%4]
		if uint32(n) >= m {
			n = int(m) - 1
		}
		bs := names(n)
		for i := range bs {
			switch r.IntN(4) {
			case 0:
				bs[i].Weight = 0
			case 1:
				bs[i].Weight = 1 + r.Uint32N(3)
			case 2:
				bs[i].Weight = 1 + r.Uint32N(10000)
			default:
				bs[i].Weight = 1 + r.Uint32()>>r.UintN(32)
			}
		}
		got, err := Build(bs, m)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			continue // no positive weight: the turns would never end
		}
		want := turns(bs, m)
		for s := range want {
			if got[s] != want[s] {
				t.Fatalf("run %d, M=%d, weights %v: slot %d holds %d, the turns give %d", run, m, bs, s, got[s], want[s])
			}
		}
	}
}

// The tail's way of claiming (claimTail, from the last tailSize(M) free
// slots on) takes the slots that probing takes: over random names, equal,
// skewed and zero weights (the walk and the heap), tables from 2 to
// 655373 slots, Build equals the paper's turns slot for slot, and some
// tables are the golden 1,000 × 65537 shape.
func TestTailSameAsTurns(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	sizes := []uint32{2, 3, 13, 251, 1009, 4099, 65537, 655373}
	for run := range 120 {
		m := sizes[run%len(sizes)]
		n := 1 + r.IntN(min(int(m)-1, 1000))
		if run%len(sizes) == 6 && run < 20 {
			n = 1000
		}
		bs := make([]Backend, n)
		for i := range bs {
			name := make([]byte, 1+r.IntN(20))
			for k := range name {
				name[k] = byte(' ' + r.IntN(95))
			}
			bs[i] = Backend{Name: fmt.Sprintf("%s#%d", name, i), Weight: 1}
			switch run % 3 {
			case 1:
				bs[i].Weight = uint32(r.IntN(4)) // zeros and near-equal: the walk
			case 2:
				bs[i].Weight = 1 + r.Uint32N(1000)>>r.UintN(10) // skewed: the heap
			}
		}
		got, err := Build(bs, m)
		if err != nil {
			t.Fatal(err)
		}
		if got == nil {
			continue
		}
		want := turns(bs, m)
		for s := range want {
			if got[s] != want[s] {
				t.Fatalf("run %d, N=%d, M=%d: slot %d holds %d, the turns give %d", run, n, m, s, got[s], want[s])
			}
		}
	}
}

// inverse is the inverse modulo a prime, for every residue of small primes
// and at the edges of the largest table size.
func TestInverse(t *testing.T) {
	for _, m := range []uint32{2, 3, 13, 251, 65537} {
		for a := uint32(1); a < m; a++ {
			if inv := inverse(a, m); uint64(a)*uint64(inv)%uint64(m) != 1 {
				t.Fatalf("inverse(%d, %d) = %d", a, m, inv)
			}
		}
	}
	const m = 16777213
	for _, a := range []uint32{1, 2, m / 2, m - 2, m - 1} {
		if inv := inverse(a, m); uint64(a)*uint64(inv)%m != 1 {
			t.Fatalf("inverse(%d, %d) = %d", a, m, inv)
		}
	}
}

// Defect: with one heavy backend among many light ones, the population loop
// walked every backend on every turn, M·N·W/ΣW steps (15 s for one backend
// at weight 10,000 and 999 at 1 with M = 16,777,213). Build's work apart
// from probing is now about one look at a backend per claim plus one per
// heap level, M·(1 + log2 N), whatever the weights (plus one turn of
// slack where it walks the turns).
func TestBuildWorkBound(t *testing.T) {
	const m = 655373
	for _, tc := range []struct {
		name  string
		heavy uint32
		n     int
	}{
		{"equal", 1, 1000},
		{"near-equal", 3, 1000},
		{"one heavy, 999 light", 10000, 1000},
		{"one heavy, 9,999 light", 10000, 10000},
		{"one at 2^32-1, 99 light", 1<<32 - 1, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := names(tc.n)
			bs[0].Weight = tc.heavy
			_, work, err := build(bs, m)
			if err != nil {
				t.Fatal(err)
			}
			bound := m*(1+bits.Len(uint(tc.n))) + 2*tc.n
			t.Logf("N=%d M=%d: %d backends looked at (%.2f per slot), bound %d", tc.n, m, work, float64(work)/m, bound)
			if work > bound {
				t.Errorf("built with %d looks at backends, want at most M·(1+log2 N)+2N = %d", work, bound)
			}
		})
	}
}

// The table depends on names and weights, not on the order of the input.
func TestOrderIndependent(t *testing.T) {
	bs := names(50)
	for i := range bs {
		bs[i].Weight = uint32(1 + i%4)
	}
	want := byName(mustBuild(t, bs, 4099), bs)
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		r.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
		got := byName(mustBuild(t, bs, 4099), bs)
		for s := range want {
			if got[s] != want[s] {
				t.Fatalf("slot %d: %s after shuffling, %s before", s, got[s], want[s])
			}
		}
	}
}

// digest is the SHA-256 of the table as backend names, one per line, so
// that it pins the mapping from names to slots.
func digest(table []uint32, bs []Backend) string {
	h := sha256.New()
	var b [4]byte
	for _, n := range byName(table, bs) {
		binary.BigEndian.PutUint32(b[:], uint32(len(n)))
		h.Write(b[:])
		h.Write([]byte(n))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// The table format is part of the fleet's behaviour: nodes of different
// releases must agree. If this test fails, the hash functions, the
// population order or the weighting changed, and every flow would move on
// upgrade.
func TestGoldenDigest(t *testing.T) {
	weighted := names(10)
	for i := range weighted {
		weighted[i].Weight = uint32(i % 3) // 0, 1, 2, ...
	}
	for _, tc := range []struct {
		name string
		bs   []Backend
		m    uint32
		want string
	}{
		{"equal", names(10), 65537, "0a39ec5be96f5b5803be14a7f5d0f2acda2d45e472e2548b46e13c11d7a48038"},
		{"weighted", weighted, 251, "01169c950f254e4589cbf2f6b5153da110fbf5406ec2c8e89ad37ccecff7031b"},
	} {
		if got := digest(mustBuild(t, tc.bs, tc.m), tc.bs); got != tc.want {
			t.Errorf("%s: table digest %s, want %s", tc.name, got, tc.want)
		}
	}
}

// changed returns the fraction of slots of a (built over old) that now hold
// another backend in b (built over new), and the same among slots that
// belonged to a backend still present.
func changed(a []uint32, old []Backend, b []uint32, cur []Backend) (all, survivors float64) {
	present := map[string]bool{}
	for _, x := range cur {
		present[x.Name] = true
	}
	var nAll, nSurv, owned int
	for s := range a {
		was, is := old[a[s]].Name, cur[b[s]].Name
		if present[was] {
			owned++
			if was != is {
				nSurv++
			}
		}
		if was != is {
			nAll++
		}
	}
	return float64(nAll) / float64(len(a)), float64(nSurv) / float64(owned)
}

// Minimal disruption (section 3.4): with M > 100·N, removing one backend
// moves few of the slots that surviving backends own.
func TestRemoveOneDisruption(t *testing.T) {
	const n, m = 100, 65537
	bs := names(n)
	before := mustBuild(t, bs, m)
	for _, drop := range []int{0, 37, 99} {
		rest := append(append([]Backend(nil), bs[:drop]...), bs[drop+1:]...)
		after := mustBuild(t, rest, m)
		_, surv := changed(before, bs, after, rest)
		t.Logf("N=%d M=%d: removing %s moves %.3f%% of survivors' slots", n, m, bs[drop].Name, 100*surv)
		if surv >= 0.01 {
			t.Errorf("removing %s moved %.2f%% of survivors' slots, want < 1%%", bs[drop].Name, 100*surv)
		}
	}
}

// Section 5.3 (Figure 12): with N = 1000 and M = 65537, when 1% of the
// backends fail about 2% of the table entries change (the failed backends'
// own 1% included); a larger M lowers the figure.
func TestOnePercentFailDisruption(t *testing.T) {
	const n = 1000
	bs := names(n)
	r := rand.New(rand.NewPCG(3, 4))
	fail := map[int]bool{}
	for len(fail) < n/100 {
		fail[r.IntN(n)] = true
	}
	var rest []Backend
	for i, b := range bs {
		if !fail[i] {
			rest = append(rest, b)
		}
	}
	for _, m := range []uint32{65537, 655373} {
		all, surv := changed(mustBuild(t, bs, m), bs, mustBuild(t, rest, m), rest)
		t.Logf("N=%d M=%d, 1%% of backends fail: %.2f%% of entries change (paper: about 2%% at M=65537); %.2f%% of survivors' entries", n, m, 100*all, 100*surv)
		if all > 0.05 {
			t.Errorf("M=%d: %.2f%% of entries changed, want under 5%%", m, 100*all)
		}
	}
}

func TestSlot(t *testing.T) {
	for _, tc := range []struct {
		hash uint64
		m    int
		want uint32
	}{
		{0, 65537, 0},
		{0x00000000ffffffff, 65537, 0}, // low half ignored
		{0xffffffff00000000, 65537, 65536},
		{0x8000000000000000, 65537, 32768}, // floor(65537/2)
		{0x8000000000000000, 13, 6},
	} {
		if got := Slot(tc.hash, tc.m); got != tc.want {
			t.Errorf("Slot(%#x, %d) = %d, want %d", tc.hash, tc.m, got, tc.want)
		}
	}
}

// FuzzBuild checks the invariants for arbitrary backend sets: every slot
// holds a backend of positive weight, and every such backend owns at least
// one slot when weights are equal.
func FuzzBuild(f *testing.F) {
	f.Add("a,b,c", []byte{1, 1, 1}, uint32(13))         // equal weights
	f.Add("a,b,c,d", []byte{0, 5, 1, 255}, uint32(251)) // a drained, skewed weights
	f.Add("x", []byte{}, uint32(2))                     // missing weight: 0, empty table
	f.Add("a,a", []byte{1, 1}, uint32(5))               // duplicate name: error
	f.Fuzz(func(t *testing.T, list string, weights []byte, m uint32) {
		m %= 4096
		parts := strings.Split(list, ",")
		bs := make([]Backend, len(parts))
		for i, p := range parts {
			bs[i].Name = p
			if i < len(weights) {
				bs[i].Weight = uint32(weights[i])
			}
		}
		table, err := Build(bs, m)
		if err != nil {
			return
		}
		if table != nil && len(table) != int(m) {
			t.Fatalf("table has %d slots, want %d", len(table), m)
		}
		for s, i := range table {
			if int(i) >= len(bs) || bs[i].Weight == 0 {
				t.Fatalf("slot %d holds backend %d", s, i)
			}
		}
	})
}

func BenchmarkMaglevBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, m := range []uint32{65537, 655373} {
			b.Run(fmt.Sprintf("N=%d/M=%d", n, m), func(b *testing.B) {
				bs := names(n)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Build(bs, m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("N=1000/M=65537/weighted", func(b *testing.B) {
		bs := names(1000)
		for i := range bs {
			bs[i].Weight = uint32(1 + i%100)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Build(bs, 65537); err != nil {
				b.Fatal(err)
			}
		}
	})
	// One backend at weight 10,000 and the others at 1, at the largest M:
	// 15 s (N=1000) and 73 s (N=10000) when every turn walked every backend.
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("N=%d/M=16777213/skewed", n), func(b *testing.B) {
			bs := names(n)
			bs[0].Weight = 10000
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(bs, 16777213); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
