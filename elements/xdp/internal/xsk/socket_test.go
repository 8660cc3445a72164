package xsk

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// check verifies the socket's invariant and that it agrees with what the
// fake kernel holds: frames in state fill are on the fake's fill or RX
// ring, frames in state tx on its TX or completion ring.
func check(t *testing.T, f *Fake, s *Socket) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, s)
	}
	fill, rx, tx, comp := f.Holding()
	if s.Count(Fill) != fill+rx || s.Count(Tx) != tx+comp {
		t.Fatalf("socket %s, fake kernel holds fill=%d rx=%d tx=%d comp=%d", s, fill, rx, tx, comp)
	}
	total := 0
	for st := range NumStates {
		total += s.Count(st)
	}
	if total != s.Frames() {
		t.Fatalf("%d frames accounted of %d", total, s.Frames())
	}
}

func TestLifecycle(t *testing.T) {
	f, s, err := NewFake(64, 2048, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	f.Record = true
	check(t, f, s)
	if err := s.Refill(); err != nil {
		t.Fatal(err)
	}
	if s.Count(Fill) != 16 || s.Count(Free) != 48 {
		t.Fatalf("after refill: %s, want fill=16 free=48", s)
	}
	for i := range 3 {
		if !f.Deliver([]byte{byte(i), 1, 2, 3}) {
			t.Fatal("deliver failed")
		}
	}
	var d [8]Desc
	n, _ := s.Receive(d[:])
	if n != 3 || d[0].Addr%2048 != Headroom || d[0].Len != 4 {
		t.Fatalf("received %d, first %+v; want 3 at headroom 256 of length 4", n, d[0])
	}
	check(t, f, s)

	// One recycled, one sent from 14 bytes before its data (an
	// encapsulation's prepend), one sent in place.
	s.Recycle(d[0].Addr)
	s.Recycle(d[0].Addr) // a second recycle is counted and ignored
	if s.C.BadRecycles != 1 {
		t.Errorf("double recycle not counted: %+v", s.C)
	}
	if !s.Queue(d[1].Addr-14, int(d[1].Len)+14) || !s.Queue(d[2].Addr, int(d[2].Len)) {
		t.Fatal("queue refused")
	}
	if s.Queue(d[2].Addr, 4) {
		t.Error("a frame queued twice")
	}
	check(t, f, s)
	if sent, dropped := s.Flush(); sent != 2 || dropped != 0 {
		t.Fatalf("flush sent %d dropped %d", sent, dropped)
	}
	check(t, f, s)
	if len(f.Sent) != 2 || len(f.Sent[0]) != 18 || f.Sent[0][14] != 1 || f.Sent[1][0] != 2 {
		t.Fatalf("sent %v", f.Sent)
	}
	// The completions were reaped in Flush: all frames are back.
	if s.Count(Tx) != 0 || s.Count(Rx) != 0 || s.Count(Free)+s.Count(Fill) != 64 {
		t.Fatalf("after completion: %s", s)
	}
}

func TestQueueBounds(t *testing.T) {
	f, s, _ := NewFake(64, 2048, 16, 8)
	s.Refill()
	f.Deliver(make([]byte, 100))
	var d [1]Desc
	s.Receive(d[:])
	if s.Queue(d[0].Addr, 2048) { // crosses into the next frame
		t.Error("a descriptor crossing its frame was queued")
	}
	if s.C.BadTxBounds != 1 || s.Count(Rx) != 0 {
		t.Errorf("bad bounds not counted and recycled: %+v %s", s.C, s)
	}
	check(t, f, s)
}

func TestTxRingFull(t *testing.T) {
	f, s, _ := NewFake(256, 2048, 64, 64)
	f.TxSize, f.TxBudget = 8, 0 // the kernel sends nothing: the ring stays full
	s.Refill()
	for range 20 {
		f.Deliver([]byte{1})
	}
	var d [64]Desc
	n, _ := s.Receive(d[:])
	for _, x := range d[:n] {
		s.Queue(x.Addr, 1)
	}
	sent, dropped := s.Flush()
	if sent != 8 || dropped != 12 || s.C.TxRingFull != 12 {
		t.Fatalf("sent %d dropped %d (%+v), want 8 and 12", sent, dropped, s.C)
	}
	check(t, f, s)
	f.TxBudget = 32
	s.Reap()
	if s.Count(Tx) != 0 {
		t.Fatalf("after the kernel sent: %s", s)
	}
	check(t, f, s)
}

func TestKickError(t *testing.T) {
	f, s, _ := NewFake(64, 2048, 16, 8)
	s.Refill()
	f.Deliver([]byte{1})
	var d [1]Desc
	s.Receive(d[:])
	f.KickErr = errors.New("sendto: network is down")
	f.TxBudget = 0
	s.Queue(d[0].Addr, 1)
	s.Flush()
	if s.C.KickErrors != 1 || s.LastErr == nil || s.Count(Tx) != 1 {
		t.Fatalf("kick error: %+v %s", s.C, s)
	}
	check(t, f, s)
}

func TestFillStarvation(t *testing.T) {
	f, s, _ := NewFake(64, 2048, 64, 8)
	s.Refill()
	var d [64]Desc
	for range 64 {
		f.Deliver([]byte{1})
	}
	s.Receive(d[:])
	// Every frame is held by the pipeline: nothing to refill.
	s.Refill()
	s.Receive(d[:])
	if s.C.FillStarved != 1 {
		t.Errorf("starvation not counted: %+v", s.C)
	}
	if f.Deliver([]byte{1}) {
		t.Error("the kernel received with an empty fill ring")
	}
	check(t, f, s)
}

// TestRandomOps drives receive, recycle, copy-in, queue, flush, reap and
// a kernel that sends at varying speed, checking the invariant after each
// step.
func TestRandomOps(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		f, s, _ := NewFake(128, 2048, 32, 16)
		f.TxSize = 16
		var held []uint64
		var d [64]Desc
		for step := range 2000 {
			switch op := rng.IntN(8); op {
			case 0:
				s.Refill()
			case 1:
				for range rng.IntN(20) {
					f.Deliver(make([]byte, 1+rng.IntN(1500)))
				}
			case 2:
				n, _ := s.Receive(d[:rng.IntN(64)])
				for _, x := range d[:n] {
					held = append(held, x.Addr)
				}
			case 3, 4:
				for len(held) > 0 && rng.IntN(4) != 0 {
					i := rng.IntN(len(held))
					a := held[i]
					held[i] = held[len(held)-1]
					held = held[:len(held)-1]
					if op == 3 {
						s.Recycle(a)
					} else {
						s.Queue(a-uint64(rng.IntN(Headroom)), 1+rng.IntN(1000))
					}
				}
			case 5:
				s.Flush()
			case 6:
				f.TxBudget = rng.IntN(40)
				s.Reap()
			case 7:
				if a, ok := s.Alloc(); ok {
					held = append(held, a+Headroom)
				}
			}
			if err := s.Check(); err != nil {
				t.Fatalf("seed %d step %d: %v (%s)", seed, step, err, s)
			}
			fill, rx, tx, comp := f.Holding()
			if s.Count(Fill) != fill+rx || s.Count(Tx) != tx+comp || s.Count(Rx) != len(held) {
				t.Fatalf("seed %d step %d: socket %s, kernel fill=%d rx=%d tx=%d comp=%d, held %d",
					seed, step, s, fill, rx, tx, comp, len(held))
			}
		}
		if s.C.BadRecycles != 0 || s.C.BadDescs != 0 || s.C.BadTxBounds != 0 {
			t.Errorf("seed %d: unexpected bad events %+v", seed, s.C)
		}
	}
}

// TestReserve: Refill keeps the reserve back from the fill ring even when
// the ring has room for every frame, Lend takes from it a frame that Queue
// sends and Recycle frees, and completions replenish it.
func TestReserve(t *testing.T) {
	f, s, err := NewFake(16, 2048, 16, 8)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReserve(4)
	if err := s.Refill(); err != nil {
		t.Fatal(err)
	}
	if s.Count(Fill) != 12 || s.Count(Free) != 4 {
		t.Fatalf("after refill: %s, want fill=12 free=4", s)
	}
	var lent []uint64
	for {
		a, ok := s.Lend()
		if !ok {
			break
		}
		lent = append(lent, a)
	}
	if len(lent) != 4 || s.C.Lent != 4 || s.C.CopiedFrames != 0 {
		t.Fatalf("lent %d frames (counters %+v), want the 4 of the reserve", len(lent), s.C)
	}
	check(t, f, s)
	s.Recycle(lent[0])
	if !s.Queue(lent[1]+Headroom, 60) || !s.Queue(lent[2]+Headroom-20, 80) {
		t.Fatal("a lent frame was refused")
	}
	s.Flush()
	check(t, f, s)
	// lent[3] is still held; the recycled and the two completed frames
	// are free again, and Refill keeps them as the reserve.
	if err := s.Refill(); err != nil {
		t.Fatal(err)
	}
	if s.Count(Free) != 3 || s.Count(Rx) != 1 {
		t.Fatalf("after completions: %s, want free=3 rx=1", s)
	}
	check(t, f, s)
}
