package snapshot

import "iter"

// RealChunk is the number of reals in one chunk of Reals: 256 reals of 80
// bytes, 20 KB. A one-backend change to a VIP of 100 reals copies one or
// two chunks, not the 8 MB of 100,000 reals.
const RealChunk = 1 << realChunkBits

const realChunkBits = 8

// Reals is a snapshot's reals indexed by real ID, in chunks of RealChunk
// that successive snapshots share: an Editor copies a chunk only when it
// writes to it, so a reload pays for the reals it changed, not for all of
// them. A chunk is never modified once published; one that two snapshots
// share (Chunk returns the same pointer) holds the same reals in both, so
// that a reader which derives state per real can keep what it derived for
// it (see elements/encap).
type Reals struct {
	chunks []*[RealChunk]Real
	n      int
}

// MakeReals returns rs as Reals (copied).
func MakeReals(rs []Real) Reals {
	e := Reals{}.Edit(len(rs))
	for i := range rs {
		e.Set(uint32(i), rs[i])
	}
	return e.Done()
}

// Len is the number of real IDs: the reals are At(0) to At(Len()-1).
func (rs *Reals) Len() int { return rs.n }

// At returns the real with ID id < Len(); its Epoch is 0 when no real has
// the ID. Two loads instead of one for a flat array, and no allocation: it
// is what the data plane reads per packet.
func (rs *Reals) At(id uint32) *Real {
	return &rs.chunks[id>>realChunkBits][id&(RealChunk-1)]
}

// All yields every real ID below Len() with its real, unused IDs (Epoch 0)
// included.
func (rs *Reals) All() iter.Seq2[uint32, *Real] {
	return func(yield func(uint32, *Real) bool) {
		for k, c := range rs.chunks {
			for j := range c {
				id := k<<realChunkBits + j
				if id >= rs.n || !yield(uint32(id), &c[j]) {
					return
				}
			}
		}
	}
}

// Chunks is the number of chunks: IDs k·RealChunk to (k+1)·RealChunk-1 are
// in chunk k, the last one in part.
func (rs *Reals) Chunks() int { return len(rs.chunks) }

// Chunk returns chunk k, read-only. The same pointer in two snapshots
// means the same reals.
func (rs *Reals) Chunk(k int) *[RealChunk]Real { return rs.chunks[k] }

// Edit returns an Editor of n reals that starts from rs: IDs below both
// lengths hold rs's reals, others none. rs is not modified.
func (rs Reals) Edit(n int) *Editor {
	chunks := make([]*[RealChunk]Real, (n+RealChunk-1)/RealChunk)
	copy(chunks, rs.chunks)
	e := &Editor{r: Reals{chunks: chunks, n: n}, owned: make([]bool, len(chunks))}
	// A last chunk kept in part holds reals beyond n: it is copied
	// and cleared there, so that no ID at or above n holds a real.
	if last := len(chunks) - 1; n < rs.n && n%RealChunk != 0 {
		c := e.chunk(uint32(last))
		clear(c[n%RealChunk:])
	}
	return e
}

// noReals is the chunk of IDs that no real ever had, shared by all.
var noReals [RealChunk]Real

// Editor makes the next snapshot's Reals from the last one's, copying a
// chunk the first time it writes to it.
type Editor struct {
	r     Reals
	owned []bool
}

// Set makes r the real with ID id < n.
func (e *Editor) Set(id uint32, r Real) {
	e.chunk(id >> realChunkBits)[id&(RealChunk-1)] = r
}

// chunk returns chunk k, the editor's own.
func (e *Editor) chunk(k uint32) *[RealChunk]Real {
	if !e.owned[k] {
		c := new([RealChunk]Real)
		if old := e.r.chunks[k]; old != nil {
			*c = *old
		}
		e.r.chunks[k], e.owned[k] = c, true
	}
	return e.r.chunks[k]
}

// Done returns the reals. The editor must not be used afterwards: its
// chunks belong to the result.
func (e *Editor) Done() Reals {
	for k, c := range e.r.chunks {
		if c == nil {
			e.r.chunks[k] = &noReals
		}
	}
	r := e.r
	e.r, e.owned = Reals{}, nil
	return r
}
