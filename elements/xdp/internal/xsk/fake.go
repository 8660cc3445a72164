package xsk

import "errors"

// Fake is an in-memory kernel side, for tests of the accounting and of
// the elements without root: the test plays the kernel with Deliver
// (receive a packet) and by letting Kick and Transmit send.
type Fake struct {
	FillSize, RxSize, TxSize, CompSize int
	// TxBudget is how many descriptors one wake-up sends (copy mode sends
	// 32); 0 sends none, so descriptors stay on the TX ring.
	TxBudget int
	// KickErr, when set, is returned by the next wake-up.
	KickErr error
	// BusyPolls counts BusyPoll calls.
	BusyPolls int

	umem                []byte
	fill, comp          []uint64
	rx, tx              []Desc
	Sent                [][]byte // copies of the sent packets, when Record
	Record              bool
	NumSent, NumKicks   int
	Dropped, NumReceive int
}

// NewFake returns a fake with rings of ringSize over a UMEM of frames
// frames of frameSize bytes, and the socket accounting over it.
func NewFake(frames, frameSize, ringSize, txBatch int) (*Fake, *Socket, error) {
	f := &Fake{FillSize: ringSize, RxSize: ringSize, TxSize: ringSize, CompSize: ringSize, TxBudget: 32,
		umem: make([]byte, frames*frameSize)}
	s, err := New(f, f.umem, frameSize, txBatch)
	return f, s, err
}

// Deliver receives data into the next fill-ring frame, as the kernel
// would, at Headroom into it. It reports false when the kernel would drop
// the packet (no frame in the fill ring, or the RX ring full).
func (f *Fake) Deliver(data []byte) bool {
	if len(f.fill) == 0 || len(f.rx) == f.RxSize {
		f.Dropped++
		return false
	}
	a := f.fill[0]
	f.fill = f.fill[:copy(f.fill, f.fill[1:])]
	copy(f.umem[a+Headroom:], data)
	f.rx = append(f.rx, Desc{Addr: a + Headroom, Len: uint32(len(data))})
	return true
}

// Holding is how many frames the fake kernel holds: fill, RX, TX and
// completion rings.
func (f *Fake) Holding() (fill, rx, tx, comp int) {
	return len(f.fill), len(f.rx), len(f.tx), len(f.comp)
}

func (f *Fake) FreeFillSlots() int { return f.FillSize - len(f.fill) }

func (f *Fake) Fill(addrs []uint64) (int, error) {
	n := min(len(addrs), f.FreeFillSlots())
	f.fill = append(f.fill, addrs[:n]...)
	return n, nil
}

func (f *Fake) Receive(out []Desc) (int, error) {
	n := copy(out, f.rx)
	f.rx = f.rx[:copy(f.rx, f.rx[n:])]
	f.NumReceive += n
	return n, nil
}

func (f *Fake) FreeTxSlots() int { return f.TxSize - len(f.tx) }

func (f *Fake) Transmit(descs []Desc) error {
	if len(descs) > f.FreeTxSlots() {
		return errors.New("fake: TX ring overflow")
	}
	f.tx = append(f.tx, descs...)
	return f.Kick()
}

func (f *Fake) TxQueued() int { return len(f.tx) }

// Kick sends up to TxBudget descriptors, as far as the completion ring
// has room.
func (f *Fake) Kick() error {
	f.NumKicks++
	if err := f.KickErr; err != nil {
		f.KickErr = nil
		return err
	}
	n := min(len(f.tx), f.TxBudget, f.CompSize-len(f.comp))
	for _, d := range f.tx[:n] {
		if f.Record {
			f.Sent = append(f.Sent, append([]byte(nil), f.umem[d.Addr:d.Addr+uint64(d.Len)]...))
		}
		f.comp = append(f.comp, d.Addr)
	}
	f.NumSent += n
	f.tx = f.tx[:copy(f.tx, f.tx[n:])]
	return nil
}

func (f *Fake) Complete(out []uint64) int {
	n := copy(out, f.comp)
	f.comp = f.comp[:copy(f.comp, f.comp[n:])]
	return n
}

func (f *Fake) Wait(int) error { return nil }

// BusyPoll counts the calls: the fake kernel has no NAPI to run.
func (f *Fake) BusyPoll() error { f.BusyPolls++; return nil }

func (f *Fake) Close() error { return nil }
