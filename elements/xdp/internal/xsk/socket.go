// Package xsk owns the frames of an AF_XDP socket (Linux
// Documentation/networking/af_xdp.rst): it knows, for every frame of the
// UMEM, whether the kernel holds it for receiving (fill ring), the pipeline
// holds it (received, or queued for transmit), the kernel holds it for
// transmitting (TX ring until it shows on the completion ring), or it is
// free. The kernel side is the Rings interface: asavie/xdp's Socket in
// production (see asavie.go), a fake in tests.
//
// asavie/xdp tracks frames itself with a flag per frame that Receive sets
// free at once and GetDescs finds by scanning every frame; neither is used
// here. A Socket is driven by one worker goroutine and takes no lock.
package xsk

import (
	"fmt"
	"math/bits"
)

// Headroom is where the kernel puts received data in a frame: the UMEM is
// registered with no headroom of its own, so only XDP_PACKET_HEADROOM.
const Headroom = 256

// Desc is a descriptor of the RX and TX rings: where a packet starts in the
// UMEM and its length.
type Desc struct {
	Addr uint64
	Len  uint32
}

// Rings is the kernel side of a socket.
type Rings interface {
	// FreeFillSlots is how many addresses Fill can take now.
	FreeFillSlots() int
	// Fill gives frames (base addresses) to the kernel to receive into
	// and returns how many it took, from the front of addrs.
	Fill(addrs []uint64) (int, error)
	// Receive moves up to len(out) received descriptors into out.
	Receive(out []Desc) (int, error)
	// FreeTxSlots is how many descriptors Transmit can take now.
	FreeTxSlots() int
	// Transmit queues descs (at most FreeTxSlots of them) on the TX ring
	// and asks the kernel to send. The descriptors are on the ring even
	// when it returns an error: the error is about the wake-up.
	Transmit(descs []Desc) error
	// Kick asks the kernel to send what is on the TX ring.
	Kick() error
	// TxQueued is how many descriptors are on the TX ring, not yet
	// taken by the kernel.
	TxQueued() int
	// Complete moves up to len(out) addresses of sent descriptors from
	// the completion ring into out.
	Complete(out []uint64) int
	// Wait blocks until a packet can be received or timeoutMs passes.
	Wait(timeoutMs int) error
	// BusyPoll runs the queue's NAPI poll once on the calling thread
	// (a non-blocking recvfrom), for a socket opened with BusyPoll.
	BusyPoll() error
	Close() error
}

// Frame states. Every frame is in exactly one at every moment.
const (
	Free   uint8 = iota // on the socket's free list
	Fill                // given to the kernel to receive into
	Rx                  // received, owned by the pipeline
	Queued              // handed to Queue, transmitted at the next Flush
	Tx                  // on the TX ring or sent, until its completion
	NumStates
)

var stateNames = [NumStates]string{"free", "fill", "rx", "queued", "tx"}

// Counters are the socket's events, owned by the worker. Elements publish
// them once per batch.
type Counters struct {
	Received     uint64 // descriptors received
	Transmitted  uint64 // descriptors put on the TX ring
	Completed    uint64 // completions reaped
	TxRingFull   uint64 // queued descriptors dropped: no TX slot
	FillStarved  uint64 // receive attempts with no frame in the fill ring
	KickErrors   uint64 // failed wake-ups (sendto), descriptors stay queued
	BadDescs     uint64 // kernel descriptors for frames it did not hold (a bug)
	BadRecycles  uint64 // Recycle or Queue of a frame the pipeline did not hold (a bug)
	BadTxBounds  uint64 // Queue of a packet not inside its frame (a bug)
	CopiedFrames uint64 // foreign packets copied into a UMEM frame to send
	Lent         uint64 // spare frames lent to the pipeline (Lend)
}

// Socket is the frame accounting over one socket's Rings.
type Socket struct {
	r       Rings
	umem    []byte
	fsize   uint64
	shift   uint
	state   []uint8
	free    []uint64 // stack of free frame base addresses
	n       [NumStates]int
	txq     []Desc   // queued for the next Flush
	scratch []uint64 // completions
	reserve int      // free frames Refill keeps back for Alloc and Lend
	C       Counters
	LastErr error // the last kick or ring error, for logging
}

// New takes over umem, all of whose frames of frameSize bytes (a power of
// two) are free and owned by no ring yet. txBatch bounds how many
// descriptors Queue holds before a Flush is forced.
func New(r Rings, umem []byte, frameSize, txBatch int) (*Socket, error) {
	if frameSize <= Headroom || frameSize&(frameSize-1) != 0 {
		return nil, fmt.Errorf("frame size %d is not a power of two above %d", frameSize, Headroom)
	}
	if len(umem) == 0 || len(umem)%frameSize != 0 {
		return nil, fmt.Errorf("UMEM of %d bytes is not a whole number of %d-byte frames", len(umem), frameSize)
	}
	nf := len(umem) / frameSize
	s := &Socket{r: r, umem: umem, fsize: uint64(frameSize), shift: uint(bits.TrailingZeros(uint(frameSize))),
		state: make([]uint8, nf), free: make([]uint64, nf), txq: make([]Desc, 0, txBatch), scratch: make([]uint64, nf)}
	for i := range s.free {
		// Reversed, so that frames leave the stack in address order.
		s.free[i] = uint64(nf-1-i) * s.fsize
	}
	s.n[Free] = nf
	return s, nil
}

// Frames is the number of frames in the UMEM.
func (s *Socket) Frames() int { return len(s.state) }

// FrameSize is the size of a frame.
func (s *Socket) FrameSize() int { return int(s.fsize) }

// Count is the number of frames in state st.
func (s *Socket) Count(st uint8) int { return s.n[st] }

// Rings returns the kernel side.
func (s *Socket) Rings() Rings { return s.r }

// Base is the base address of the frame holding addr.
func (s *Socket) Base(addr uint64) uint64 { return addr &^ (s.fsize - 1) }

// Frame returns the frame with the given base address.
func (s *Socket) Frame(base uint64) []byte { return s.umem[base : base+s.fsize : base+s.fsize] }

func (s *Socket) move(f uint64, to uint8) {
	s.n[s.state[f]]--
	s.state[f] = to
	s.n[to]++
}

// SetReserve makes Refill keep n free frames back from the kernel, so
// that Alloc and Lend find one even when the fill ring has room for every
// free frame. Completions replenish the reserve.
func (s *Socket) SetReserve(n int) { s.reserve = max(n, 0) }

// Refill gives free frames to the kernel, as many as the fill ring takes,
// but the reserve.
func (s *Socket) Refill() error {
	k := min(len(s.free)-s.reserve, s.r.FreeFillSlots())
	if k <= 0 {
		return nil
	}
	tail := s.free[len(s.free)-k:]
	m, err := s.r.Fill(tail)
	for _, a := range tail[:m] {
		s.move(a>>s.shift, Fill)
	}
	// Keep the untaken ones on the stack.
	copy(tail, tail[m:])
	s.free = s.free[:len(s.free)-m]
	return err
}

// Receive moves up to len(out) received descriptors into out and returns
// how many. Their frames are the pipeline's until Recycle or Queue.
func (s *Socket) Receive(out []Desc) (int, error) {
	if s.n[Fill] == 0 {
		s.C.FillStarved++
	}
	n, err := s.r.Receive(out)
	j := 0
	for _, d := range out[:n] {
		f := d.Addr >> s.shift
		off := d.Addr & (s.fsize - 1)
		if f >= uint64(len(s.state)) || s.state[f] != Fill {
			s.C.BadDescs++
			continue
		}
		s.move(f, Rx)
		if d.Len == 0 || off+uint64(d.Len) > s.fsize {
			s.C.BadDescs++
			s.Recycle(d.Addr)
			continue
		}
		out[j] = d
		j++
	}
	s.C.Received += uint64(j)
	return j, err
}

// Recycle returns a received frame (any address inside it) to the free
// list. A frame the pipeline does not hold is counted and left alone, so
// a double recycle cannot put a frame in two places.
func (s *Socket) Recycle(addr uint64) {
	f := addr >> s.shift
	if f >= uint64(len(s.state)) || s.state[f] != Rx {
		s.C.BadRecycles++
		return
	}
	s.move(f, Free)
	s.free = append(s.free, f<<s.shift)
}

// Alloc takes a free frame for the pipeline (to copy a packet into) and
// returns its base address; false when none is free.
func (s *Socket) Alloc() (uint64, bool) {
	a, ok := s.take()
	if ok {
		s.C.CopiedFrames++
	}
	return a, ok
}

// Lend takes a free frame for the pipeline to build a packet in (a spare,
// see pipeline.FrameSupplier) and returns its base address; false when
// none is free. The frame is then held like a received one: Queue sends
// it, Recycle frees it.
func (s *Socket) Lend() (uint64, bool) {
	a, ok := s.take()
	if ok {
		s.C.Lent++
	}
	return a, ok
}

func (s *Socket) take() (uint64, bool) {
	if len(s.free) == 0 {
		return 0, false
	}
	a := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.move(a>>s.shift, Rx)
	return a, true
}

// Queue queues a held frame for transmission of the bytes at addr
// (inside the frame, after its base: encapsulation moves it back into the
// headroom) and length bytes. It flushes first when the queue is full. It
// reports false, having recycled or ignored the frame, when the descriptor
// is invalid.
func (s *Socket) Queue(addr uint64, length int) bool {
	f := addr >> s.shift
	if f >= uint64(len(s.state)) || s.state[f] != Rx {
		s.C.BadRecycles++
		return false
	}
	// The kernel drops a descriptor that crosses a frame boundary without
	// completing it, which would leak the frame.
	if length <= 0 || (addr&(s.fsize-1))+uint64(length) > s.fsize {
		s.C.BadTxBounds++
		s.Recycle(addr)
		return false
	}
	if len(s.txq) == cap(s.txq) {
		s.Flush()
	}
	s.move(f, Queued)
	s.txq = append(s.txq, Desc{Addr: addr, Len: uint32(length)})
	return true
}

// Flush puts the queued descriptors on the TX ring, as many as it has
// room for; the rest are dropped (counted as TxRingFull) and their frames
// freed. It then reaps completions. It returns how many it put on the
// ring and how many it dropped.
func (s *Socket) Flush() (sent, dropped int) {
	q := s.txq
	s.txq = s.txq[:0]
	if len(q) > 0 {
		k := min(len(q), s.r.FreeTxSlots())
		for _, d := range q[:k] {
			s.move(d.Addr>>s.shift, Tx)
		}
		for _, d := range q[k:] {
			f := d.Addr >> s.shift
			s.move(f, Free)
			s.free = append(s.free, f<<s.shift)
		}
		if k > 0 {
			if err := s.r.Transmit(q[:k]); err != nil {
				s.C.KickErrors++
				s.LastErr = err
			}
		}
		sent, dropped = k, len(q)-k
		s.C.Transmitted += uint64(k)
		s.C.TxRingFull += uint64(dropped)
	}
	s.Reap()
	return sent, dropped
}

// Reap frees the frames the kernel has finished sending, and wakes it up
// again when descriptors are still waiting on the TX ring (in copy mode a
// wake-up sends a bounded number).
func (s *Socket) Reap() {
	if s.n[Tx] == 0 {
		return
	}
	if s.r.TxQueued() > 0 {
		if err := s.r.Kick(); err != nil {
			s.C.KickErrors++
			s.LastErr = err
		}
	}
	n := s.r.Complete(s.scratch)
	for _, a := range s.scratch[:n] {
		f := a >> s.shift
		if f >= uint64(len(s.state)) || s.state[f] != Tx {
			s.C.BadDescs++
			continue
		}
		s.move(f, Free)
		s.free = append(s.free, f<<s.shift)
	}
	s.C.Completed += uint64(n)
}

// Check verifies the accounting invariant: every frame is in exactly one
// state, the per-state counts match, and the free list holds exactly the
// free frames, each once.
func (s *Socket) Check() error {
	var n [NumStates]int
	for f, st := range s.state {
		if st >= NumStates {
			return fmt.Errorf("frame %d in unknown state %d", f, st)
		}
		n[st]++
	}
	if n != s.n {
		return fmt.Errorf("state counts %v, tracked %v", n, s.n)
	}
	if len(s.free) != n[Free] {
		return fmt.Errorf("free list has %d frames, %d are free", len(s.free), n[Free])
	}
	seen := make([]bool, len(s.state))
	for _, a := range s.free {
		f := a >> s.shift
		if a&(s.fsize-1) != 0 || f >= uint64(len(s.state)) {
			return fmt.Errorf("free list holds bad address %#x", a)
		}
		if seen[f] || s.state[f] != Free {
			return fmt.Errorf("frame %d on the free list twice or in state %s", f, stateNames[s.state[f]])
		}
		seen[f] = true
	}
	if len(s.txq) != n[Queued] {
		return fmt.Errorf("%d descriptors queued, %d frames in state queued", len(s.txq), n[Queued])
	}
	return nil
}

// String summarises the states, for test failures.
func (s *Socket) String() string {
	out := ""
	for st, c := range s.n {
		out += fmt.Sprintf("%s=%d ", stateNames[st], c)
	}
	return out
}

// Close closes the kernel side. The frames go with the UMEM.
func (s *Socket) Close() error {
	if s.r == nil {
		return nil
	}
	err := s.r.Close()
	s.r = nil
	return err
}
