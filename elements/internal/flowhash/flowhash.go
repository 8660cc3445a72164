package flowhash

import (
	"encoding/binary"
	"math/bits"

	"github.com/xlbproject/xlb/pipeline"
)

// Package flowhash is xlb's flow hash, shared by Parse5Tuple, which
// hashes every packet, and the elements that key a flow table on a flow
// they make up (NAT's replies, in ConnTrack).
//
// The flow hash is part of xlb's wire-visible behaviour: every node of a
// fleet, and every release, must map a flow to the same value, or flows move
// between backends when ECMP moves them between nodes or a node is upgraded.
// Changing anything below is a breaking change; the golden vectors in
// elements/parse/hash_test.go are there to catch it.
//
// The construction is wyhash's (Wang Yi, public domain): the 128-bit product
// of two 64-bit words folded by XOR ("mum"), with wyhash's secrets as the
// odd constants. Source and destination are mixed in independent lanes so
// the CPU overlaps the two multiplications, and a third multiplication
// joins them with the ports and protocol. Only the 5-tuple is hashed, not
// Flow.Family or Flow.Flags: an ICMP error's reversed inner flow must hash
// like the flow it quotes.
const (
	k0 = 0xa0761d6478bd642f
	k1 = 0xe7037ed1a0b428db
	k2 = 0x8ebc6af09c88c6e3
	k3 = 0x589965cc75374cc3
	k4 = 0x1d8e4e27c47d124f
)

// mix is wyhash's mum: the high and low halves of a*b, XORed.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// Key is a seed expanded once (per batch) for the flow hash, as wyhash
// scrambles its seed, so that nearby seeds give unrelated hashes.
type Key uint64

// NewKey expands seed (snapshot.HashSeed).
func NewKey(seed uint64) Key { return Key(seed ^ mix(seed^k0, k1)) }

// Hash returns the flow hash of f under k's seed: a deterministic, keyed
// 64-bit hash of Src, Dst, SrcPort, DstPort and Proto, identical on every
// node and across releases. Every bit is usable: the low bits index hash
// tables and the whole value is reduced to a Maglev slot. It is not a
// cryptographic MAC; keep the seed private if hash flooding of connection
// tables is a concern.
func (k Key) Hash(f *pipeline.Flow) uint64 {
	return k.Words(binary.LittleEndian.Uint64(f.Src[0:8]), binary.LittleEndian.Uint64(f.Src[8:16]),
		binary.LittleEndian.Uint64(f.Dst[0:8]), binary.LittleEndian.Uint64(f.Dst[8:16]),
		uint64(f.SrcPort)<<24|uint64(f.DstPort)<<8|uint64(f.Proto))
}

// Words is Hash of a flow given as the little-endian words of its
// addresses and its ports and protocol packed as Hash packs them: the
// parser's fast path hashes the values it holds in registers rather than
// load back the Flow it has just stored. It is one expression, without
// locals, to stay within the inliner's budget: Parse5Tuple's fast path
// then hashes without a call.
func (k Key) Words(s0, s1, d0, d1, ports uint64) uint64 {
	return mix(mix(s0^k1, s1^uint64(k))^ports^k3, mix(d0^k2, d1^uint64(k))^k4)
}

// Score is the rendezvous score of a node of seed nodeSeed for a flow of
// hash h (FragRedirect's choice of node): mixed again so that nodes'
// scores for one flow are independent.
func Score(h, nodeSeed uint64) uint64 { return mix(h^nodeSeed, k3) }
