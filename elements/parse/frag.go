package parse

import (
	"math"
	"math/bits"
	"time"

	"github.com/xlbproject/xlb/pipeline"
)

// Fragments are steered as Maglev steers them (Eisenbud et al., NSDI 2016,
// fragment handling): the first fragment carries the transport header, so it is parsed,
// port-filtered and hashed on its 5-tuple like an unfragmented packet of
// its flow, and it records that flow in a per-worker fragment table under
// (src, dst, protocol, IP ID or IPv6 fragment identification). A later
// fragment carries no ports: it takes its first fragment's flow and hash
// from the table and so goes wherever the flow's packets go.
//
// A later fragment whose first fragment is not in the table (not seen yet,
// timed out, or evicted) is held, by copy and briefly, for a first not
// seen yet (hold.go), or else counted and dropped: steering it on its
// 3-tuple instead would send it to a backend that is not its datagram's,
// which is the defect this table fixes.

// Limits and defaults of the fragment table.
const (
	defaultFragCapacity = 4096
	maxFragCapacity     = 1 << 20
	defaultFragTimeout  = "1s"
	// maxFragTimeout is Linux's default reassembly timeout
	// (ipfrag_time): a datagram whose fragments are further apart than
	// that does not reassemble at the backend either.
	maxFragTimeout = 30 * time.Second
)

// fragWays is the associativity of a bucket of the fragment table.
const fragWays = 4

// fragTickShift converts the batch clock (ns) to the table's 32-bit clock:
// a tick is 2^20 ns (about 1.05 ms), as in ConnTrack.
const fragTickShift = 20

// fragment is what parseFrame finds out about an IP fragment.
type fragment struct {
	kind int // notFragment, firstFragment or laterFragment
	// key identifies the datagram: Src, Dst, Family, the protocol every
	// fragment carries (IPv4 Protocol, IPv6 Fragment header Next Header)
	// in Proto, and the IPv4 ID or the IPv6 identification in SrcPort
	// (high 16 bits) and DstPort (low 16 bits).
	key pipeline.Flow
}

// fragEntry is one datagram whose first fragment was seen.
type fragEntry struct {
	key  pipeline.Flow
	flow pipeline.Flow // as the first fragment was parsed
	hash uint64
	seen uint32 // tick of the last fragment
	used bool
}

// fragCounters is one batch's worth of counts, published in EndBatch.
type fragCounters struct {
	recorded, followed, expired, evicted uint64
}

// fragTable is the per-worker fragment table: set-associative, allocated
// whole in setup, with per-bucket LRU replacement. It belongs to one
// worker's Parse5Tuple and is never shared.
type fragTable struct {
	// key hashes datagram keys to buckets. It is taken from the hash
	// seed once, at setup, so that an attacker who does not know the
	// seed cannot aim datagrams at one bucket, and a seed changed by a
	// reload does not lose the datagrams in flight.
	key     hashKey
	ents    []fragEntry
	mask    uint64 // buckets - 1
	timeout int32  // ticks
	tick    uint32 // the batch's clock
	local   fragCounters
}

// fragTimeoutTicks converts a validated frag_timeout to ticks, rounding up.
func fragTimeoutTicks(d time.Duration) int32 {
	return int32((d + 1<<fragTickShift - 1) >> fragTickShift)
}

// init allocates a table of at least capacity entries (rounded up to a
// power of two of buckets) whose bucket hash is keyed by seed.
func (t *fragTable) init(capacity int, timeout time.Duration, seed uint64) {
	t.key = newHashKey(seed)
	nb := uint64(1) << bits.Len64(uint64(capacity+fragWays-1)/fragWays-1)
	t.ents = make([]fragEntry, nb*fragWays)
	t.mask = nb - 1
	t.timeout = fragTimeoutTicks(timeout)
}

func (t *fragTable) bucket(key *pipeline.Flow) []fragEntry {
	i := (t.key.Hash(key) & t.mask) * fragWays
	return t.ents[i : i+fragWays : i+fragWays]
}

// age is how many ticks ago e was seen; a clock that went backwards reads
// as 0.
func (t *fragTable) age(e *fragEntry) int32 { return max(int32(t.tick-e.seen), 0) }

// record stores the flow and hash of the first fragment of datagram key.
// It takes, in order, the datagram's own entry (a
// first fragment sent again, or an identification reused), a free way, the
// least recently seen way; replacing a live one counts an eviction.
func (t *fragTable) record(key, flow *pipeline.Flow, hash uint64) {
	b := t.bucket(key)
	var v *fragEntry
	vAge := int32(-1)
	for w := range b {
		e := &b[w]
		if e.used && e.key == *key {
			v = e
			break
		}
		a := int32(math.MaxInt32)
		if e.used {
			a = t.age(e)
		}
		if a > vAge {
			v, vAge = e, a
		}
	}
	if v.used && v.key != *key && vAge <= t.timeout {
		t.local.evicted++
	}
	v.key, v.flow, v.hash, v.seen, v.used = *key, *flow, hash, t.tick, true
	t.local.recorded++
}

// follow returns the live entry of datagram key and refreshes it, or nil.
func (t *fragTable) follow(key *pipeline.Flow) *fragEntry {
	b := t.bucket(key)
	for w := range b {
		e := &b[w]
		if e.used && e.key == *key {
			if t.age(e) > t.timeout {
				e.used = false
				t.local.expired++
				return nil
			}
			e.seen = t.tick
			t.local.followed++
			return e
		}
	}
	return nil
}
