package parse

import (
	"github.com/xlbproject/xlb/elements/internal/flowhash"
	"github.com/xlbproject/xlb/pipeline"
)

// hashKey is the flow hash's seed expanded (elements/internal/flowhash,
// which says why it must never change).
type hashKey = flowhash.Key

func newHashKey(seed uint64) hashKey { return flowhash.NewKey(seed) }

// HashFlow returns the flow hash of f under seed (snapshot.HashSeed): a
// deterministic, keyed 64-bit hash of Src, Dst, SrcPort, DstPort and Proto,
// identical on every node and across releases (flowhash.Key.Hash).
func HashFlow(seed uint64, f *pipeline.Flow) uint64 { return newHashKey(seed).Hash(f) }
