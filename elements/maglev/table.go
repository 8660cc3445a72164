// Package maglev implements Maglev consistent hashing (Eisenbud et al.,
// "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
// section 3.4) and the MaglevSelect element, which picks a backend for the
// first packet of a flow by looking its hash up in the VIP's table.
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

// MaxWeight bounds a backend weight. The population loop runs one pass over
// the backends per round and only the heaviest backend is sure to take a slot
// each round, so the build costs about M·N·maxW/ΣW steps: bounding weights
// bounds that (at worst, one backend at MaxWeight and the rest at 1, it is
// about M·N).
const MaxWeight = 10000

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

// participant is one backend's state in the population loop.
type participant struct {
	pos    uint32 // next slot of its preference list to try
	skip   uint32
	weight uint32 // reduced by the weights' GCD
	acc    uint32 // accumulated weight (credit) for the weighted turns
	index  uint32 // index in the caller's slice
}

// Build returns the Maglev lookup table of size m for backends: table[slot]
// is an index into backends. The table is the same for any order of the
// input, since backends are sorted by name first; names must be unique.
// Backends with weight 0 take no slot. With no backend of positive weight
// the table is nil.
//
// Weights (a departure: the paper names weighted backends but gives no
// method) follow Katran's weighted Maglev: backends take turns in name order
// as in the paper's Pseudocode 1, but each turn a backend adds its weight to
// a credit and claims a slot only when the credit reaches the largest weight,
// which it then pays. A backend's share of slots is thus proportional to its
// weight, and with equal weights (reduced by their GCD to 1) every backend
// claims a slot every turn, which is the paper's algorithm exactly.
func Build(backends []Backend, m uint32) ([]uint32, error) {
	if err := CheckTableSize(m, len(backends)); err != nil {
		return nil, err
	}
	order := make([]uint32, 0, len(backends))
	for i, b := range backends {
		if b.Weight > MaxWeight {
			return nil, fmt.Errorf("backend %q: weight %d is larger than the maximum %d", b.Name, b.Weight, MaxWeight)
		}
		if b.Weight > 0 {
			order = append(order, uint32(i))
		}
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(backends[a].Name, backends[b].Name) })
	for i := 1; i < len(order); i++ {
		if backends[order[i]].Name == backends[order[i-1]].Name {
			return nil, fmt.Errorf("backend name %q appears twice; names identify backends in the table", backends[order[i]].Name)
		}
	}
	if len(order) == 0 {
		return nil, nil
	}

	var g, maxW uint32
	for _, i := range order {
		g = gcd(g, backends[i].Weight)
	}
	ps := make([]participant, len(order))
	for k, i := range order {
		offset, skip := permutation(backends[i].Name, m)
		w := backends[i].Weight / g
		maxW = max(maxW, w)
		ps[k] = participant{pos: offset, skip: skip, weight: w, index: i}
	}

	table := make([]uint32, m)
	// taken is a bitmap of claimed slots: the loop probes it about
	// m·ln(m) times at random, and at m/8 bytes it stays in cache where
	// the table would not.
	taken := make([]uint64, (m+63)/64)
	filled := uint32(0)
	for {
		for k := range ps {
			p := &ps[k]
			p.acc += p.weight
			if p.acc < maxW {
				continue
			}
			p.acc -= maxW
			c := p.pos
			for taken[c>>6]&(1<<(c&63)) != 0 {
				if c += p.skip; c >= m {
					c -= m
				}
			}
			taken[c>>6] |= 1 << (c & 63)
			table[c] = p.index
			if c += p.skip; c >= m {
				c -= m
			}
			p.pos = c
			if filled++; filled == m {
				return table, nil
			}
		}
	}
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
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
