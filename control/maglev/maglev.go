// Package maglev is the Maglev consistent-hashing table (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
// section 3.4): building a VIP's lookup table from its backends, checking
// table sizes, and reducing a flow hash to a slot. It is a leaf that knows
// nothing of packets or elements (as Katran keeps its MaglevHash apart from
// the balancer): the control plane builds tables with it, off the hot path,
// and the data plane reads them through control/snapshot.
//
// Every node must build the same table from the same backends, so the table
// depends only on backend names, weights and the table size M: the input is
// sorted by name, and the two hash functions are pinned here (not Go's
// per-process maphash). Departures from the paper are commented where they
// happen: the hash functions (the paper leaves them open), weights (the paper
// mentions weighted backends without giving the method), and the reduction
// of a flow hash to a slot (see Slot).
package maglev

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// Backend is one participant in a table: its name is its identity (it picks
// the backend's preference list), its weight its relative share of slots.
type Backend struct {
	Name   string
	Weight uint32
}

// MaxTableSize bounds M: a table is 4·M bytes per VIP, and building it costs
// about M·ln(M) probes.
const MaxTableSize = 1 << 24

// IsPrime reports whether n is prime (trial division by 6k±1, at most about
// 22,000 divisions for a 32-bit n).
func IsPrime(n uint32) bool {
	if n < 4 {
		return n >= 2
	}
	if n%2 == 0 || n%3 == 0 {
		return false
	}
	for d := uint64(5); d*d <= uint64(n); d += 6 {
		if uint64(n)%d == 0 || uint64(n)%(d+2) == 0 {
			return false
		}
	}
	return true
}

// CheckTableSize reports whether m can be the table size for n backends: a
// prime (so that every skip value in [1, m-1] walks a full permutation of the
// slots) greater than n, at most MaxTableSize. The paper recommends
// m > 100·n to keep shares within about 1% of each other; smaller sizes work
// with coarser balance.
func CheckTableSize(m uint32, n int) error {
	switch {
	case m > MaxTableSize:
		return fmt.Errorf("table size %d is larger than the maximum %d", m, MaxTableSize)
	case !IsPrime(m):
		return fmt.Errorf("table size %d is not a prime", m)
	case uint64(m) <= uint64(n):
		return fmt.Errorf("table size %d must be greater than the number of backends (%d)", m, n)
	}
	return nil
}

// The two hash functions of section 3.4, pinned: they are part of the table
// format, and changing them moves flows on upgrade (TestGoldenDigest guards
// them). Both start from the 64-bit FNV-1a of the name and finish with
// MurmurHash3's fmix64, the second after xoring in a constant (the 64-bit
// golden ratio) so that the two values are independent.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
	skipSalt    = 0x9e3779b97f4a7c15
)

func fnv1a64(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// permutation returns the start (offset) and step (skip) of name's
// preference list over m slots: slot j of the list is (offset + j·skip) mod m.
func permutation(name string, m uint32) (offset, skip uint32) {
	h := fnv1a64(name)
	offset = uint32(fmix64(h) % uint64(m))
	skip = uint32(fmix64(h^skipSalt)%uint64(m-1)) + 1
	return offset, skip
}

// Build returns the Maglev lookup table of size m for backends: table[slot]
// is an index into backends. The table is the same for any order of the
// input, since backends are sorted by name first; names must be unique.
// Backends with weight 0 take no slot. With no backend of positive weight
// the table is nil.
//
// Weights (a departure: the paper names weighted backends but gives no
// method) follow Katran's weighted Maglev: backends take turns in name order
// as in the paper's Pseudocode 1, but each turn a backend adds its weight w
// to a credit and claims its next preferred free slot only when the credit
// reaches the largest weight W, which it then pays. A backend's share of
// slots is thus proportional to its weight, and with equal weights every
// backend claims a slot every turn, which is the paper's algorithm exactly.
//
// Walking every backend on every turn would cost M·N·W/ΣW steps: with one
// heavy backend among many light ones, most turns give most backends
// nothing to do. Instead the claims are taken in the order those turns
// would make them, without the turns: a backend's credit reaches W for the
// j-th time at turn ⌈j·W/w⌉, so a min-heap keyed by (that turn, position in
// name order) yields exactly the same claims, in the same order, at
// O(log N) each: O(M·log N) for any weights, plus the probes for free slots
// that the paper's algorithm pays as well. Where walking the turns costs no
// more (equal or near-equal weights), Build walks them.
func Build(backends []Backend, m uint32) ([]uint32, error) {
	table, _, err := build(backends, m)
	return table, err
}

// build is Build, also returning its work apart from probing for free
// slots: how many times it looked at a backend to find the next claim (one
// per claim, plus one per level a claim sinks in the heap). Tests hold it
// to the O(M·log N) bound.
func build(backends []Backend, m uint32) (table []uint32, work int, err error) {
	if err := CheckTableSize(m, len(backends)); err != nil {
		return nil, 0, err
	}
	order := make([]uint32, 0, len(backends))
	for i, b := range backends {
		if b.Weight > 0 {
			order = append(order, uint32(i))
		}
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(backends[a].Name, backends[b].Name) })
	for i := 1; i < len(order); i++ {
		if backends[order[i]].Name == backends[order[i-1]].Name {
			return nil, 0, fmt.Errorf("backend name %q appears twice; names identify backends in the table", backends[order[i]].Name)
		}
	}
	if len(order) == 0 {
		return nil, 0, nil
	}

	f := filler{m: m, table: make([]uint32, m), taken: make([]uint64, (m+63)/64),
		ps: make([]participant, len(order)), tailAt: tailSize(m)}
	maxW, sumW := uint64(0), uint64(0)
	for k, i := range order {
		p := &f.ps[k]
		p.pos, p.skip = permutation(backends[i].Name, m)
		for j := range p.back {
			p.back[j] = uint32((uint64(j+1)*uint64(p.skip))%uint64(m)) - m
		}
		p.weight, p.index = uint64(backends[i].Weight), i
		maxW, sumW = max(maxW, p.weight), sumW+p.weight
	}
	n := uint64(len(order))
	if n*maxW <= sumW*uint64(1+bits.Len64(n)) {
		// Walking the turns costs N·W/ΣW looks per claim, no more than
		// the heap's 1 + log2 N: with equal or near-equal weights the
		// walk is the cheaper way to the same table.
		for {
			for k := range f.ps {
				work++
				p := &f.ps[k]
				if p.credit += p.weight; p.credit < maxW {
					continue
				}
				p.credit -= maxW
				if f.claim(p) {
					return f.table, work, nil
				}
			}
		}
	}
	// turn(k, j) is the turn of backend k's j-th claim (j ≥ 1).
	turn := func(k int, j uint64) uint64 {
		w := f.ps[k].weight
		return (j*maxW + w - 1) / w
	}
	h := make(claimHeap, len(order))
	for k := range order {
		h[k] = nextClaim{turn: turn(k, 1), k: uint32(k), j: 1}
	}
	h.init()
	for {
		c := &h[0]
		work++
		if f.claim(&f.ps[c.k]) {
			return f.table, work, nil
		}
		c.j++
		c.turn = turn(int(c.k), uint64(c.j))
		work += h.down(0)
	}
}

// filler is the table being populated and its participants, in name order.
type filler struct {
	m     uint32
	table []uint32
	// taken is a bitmap of claimed slots: the loop probes it about
	// m·ln(m) times at random, and at m/8 bytes it stays in cache where
	// the table would not.
	taken  []uint64
	filled uint32
	ps     []participant
	// tailAt is the number of free slots at which claims stop probing
	// (see claimTail); free lists those slots once they are that few.
	tailAt uint32
	free   []uint32
	// mu is floor((2^64-1)/m), for Barrett reduction modulo m (mod).
	mu uint64
}

// participant is one backend in the population loop.
type participant struct {
	pos   uint32 // next slot of its preference list to try
	skip  uint32
	index uint32 // index in the caller's slice
	inv   uint32 // skip's inverse modulo m, 0 until the tail needs it
	// back[j] is (j+1)·skip mod m, minus m (modulo 2^32): step(c,
	// back[j], m) is the slot j+1 places after c in the preference list.
	back   [probes]uint32
	weight uint64
	credit uint64 // accumulated weight, while walking the turns
}

// claim gives p its next preferred free slot and reports whether the table
// is now full.
//
// It looks at the next probes slots of p's preference list at once: each
// is computed from the first (c + j·skip, precomputed modulo m), not from
// the one before, so the four loads and tests are independent and run
// side by side where one at a time each waited for the last, and the loop
// ends (its one mispredicted branch) once per four looks rather than once
// per claim. The first free slot of the four in preference order is the
// one taken, as looking one at a time would take it.
func (f *filler) claim(p *participant) bool {
	if f.free != nil {
		return f.claimTail(p)
	}
	// m and taken in locals, so that the loop does not reload them after
	// every store (the compiler cannot tell the table from the filler).
	c, m, taken := p.pos, f.m, f.taken
	b := &p.back
	for {
		c1, c2, c3 := step(c, b[0], m), step(c, b[1], m), step(c, b[2], m)
		busy := taken[c>>6]>>(c&63)&1 | taken[c1>>6]>>(c1&63)&1<<1 |
			taken[c2>>6]>>(c2&63)&1<<2 | taken[c3>>6]>>(c3&63)&1<<3
		if busy != 1<<probes-1 {
			look := [probes]uint32{c, c1, c2, c3}
			c = look[bits.TrailingZeros64(^busy)&(probes-1)]
			break
		}
		c = step(c, b[probes-1], m)
	}
	taken[c>>6] |= 1 << (c & 63)
	f.table[c] = p.index
	p.pos = step(c, b[0], m)
	f.filled++
	if f.m-f.filled == f.tailAt && f.filled < f.m {
		f.startTail()
	}
	return f.filled == f.m
}

// probes is how many slots of a preference list claim looks at at once.
const probes = 4

// step is (c + k) mod m for c < m, given back = k - m (modulo 2^32) for
// some k < m: c + back, plus m when that is negative, without a branch
// (the compiler will not use a conditional move for a value that
// addresses a load, and a branch on the wrap is mispredicted half the
// time).
func step(c, back, m uint32) uint32 {
	c += back
	return c + m&uint32(int32(c)>>31)
}

// tailSize is the number of free slots below which claims take the tail's
// way (claimTail) rather than probing. With F slots free a probe finds one
// with odds F/M, so probing costs about M/F looks per claim (M·ln M in all,
// half of it in the last √M slots), where the tail's way costs F
// multiply-reduces: the two meet near F = √M times the ratio of their
// costs. Measured (builds of N = 100, M = 65537, alternated in one
// process), √M is the fastest of ½√M to 4√M with four looks at a time; 2√M
// was, looking at one slot at a time.
func tailSize(m uint32) uint32 {
	return uint32(math.Sqrt(float64(m)))
}

// startTail lists the free slots, from which claimTail takes from now on.
func (f *filler) startTail() {
	f.free = make([]uint32, 0, f.m-f.filled)
	for w, word := range f.taken {
		for free := ^word; free != 0; free &= free - 1 {
			if s := uint32(w*64 + bits.TrailingZeros64(free)); s < f.m {
				f.free = append(f.free, s)
			}
		}
	}
	f.mu = ^uint64(0) / uint64(f.m)
}

// claimTail is claim when few slots are free: p's next preferred free slot
// is the free slot s that comes first in its preference list from p.pos,
// the one whose distance j in that list, from p.pos + j·skip ≡ s (mod m),
// is the smallest: j = (s - p.pos)·skip⁻¹ mod m, one multiply and one
// reduction per free slot instead of about m/F probes. It takes the same
// slot as probing would, so the table is the same.
func (f *filler) claimTail(p *participant) bool {
	m := uint64(f.m)
	if p.inv == 0 {
		p.inv = inverse(p.skip, f.m)
	}
	inv, pos := uint64(p.inv), m-uint64(p.pos)
	best, at := ^uint64(0), 0
	for i, s := range f.free {
		// (s + m - pos)·inv < 2m·m < 2^49: mod's bound holds.
		if j := f.mod((uint64(s) + pos) * inv); j < best {
			best, at = j, i
		}
	}
	s := f.free[at]
	f.free[at] = f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	f.table[s] = p.index
	if s += p.skip; s >= f.m {
		s -= f.m
	}
	p.pos = s
	f.filled++
	return f.filled == f.m
}

// mod is x mod m for x < 2^63 by Barrett reduction: the quotient
// floor(x·mu/2^64) is short of x/m by less than 2, so one subtraction
// finishes, where a division would cost tens of cycles.
func (f *filler) mod(x uint64) uint64 {
	q, _ := bits.Mul64(x, f.mu)
	r := x - q*uint64(f.m)
	if r >= uint64(f.m) {
		r -= uint64(f.m)
	}
	return r
}

// inverse returns a⁻¹ mod m for 0 < a < m, m prime (extended Euclid).
func inverse(a, m uint32) uint32 {
	t, nt := int64(0), int64(1)
	r, nr := int64(m), int64(a)
	for nr != 0 {
		q := r / nr
		t, nt = nt, t-q*nt
		r, nr = nr, r-q*nr
	}
	if t < 0 {
		t += int64(m)
	}
	return uint32(t)
}

// nextClaim is backend k's j-th claim, due at turn.
type nextClaim struct {
	turn uint64
	k, j uint32
}

// claimHeap is a binary min-heap of claims by (turn, k): k breaks ties
// because within a turn backends go in name order.
type claimHeap []nextClaim

func (h claimHeap) less(a, b int) bool {
	return h[a].turn < h[b].turn || h[a].turn == h[b].turn && h[a].k < h[b].k
}

func (h claimHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// down sinks h[i] to its place and returns how many levels it moved.
func (h claimHeap) down(i int) (levels int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return levels
		}
		if c+1 < len(h) && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			return levels
		}
		h[i], h[c] = h[c], h[i]
		i = c
		levels++
	}
}

// Slot maps a 64-bit flow hash to a slot of a table of size m, with Lemire's
// multiply-shift reduction ("Fast random integer generation in an interval",
// 2019) of the hash's high 32 bits: floor(hi32 · m / 2^32). It is a multiply
// instead of a division; its bias (some slots get one more of the 2^32 hash
// values than others) is at most m/2^32 of a slot's share: 0.0015% for
// m = 65537, 0.4% at MaxTableSize. The high half is used so that the slot stays independent
// of hash tables that index by the low bits (ConnTrack). Pinned: every node
// must map a flow to the same slot.
func Slot(hash uint64, m int) uint32 {
	return uint32((hash >> 32) * uint64(m) >> 32)
}
