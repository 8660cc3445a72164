package xdp

import (
	"bytes"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/elements/xdp/internal/xsk"
	"github.com/xlbproject/xlb/pipeline"
)

// gwMAC and ifMAC are the next hop's and the interface's addresses in the
// fake setups.
var (
	gwMAC = []byte{0x02, 0, 0, 0, 0, 0x02}
	ifMAC = []byte{0x02, 0, 0, 0, 0, 0x01}
)

// fakePair is a worker's RxXDP and TxXDP over a fake kernel, as Provision
// would wire them, without root.
func fakePair(t testing.TB, ringSize int) (*xsk.Fake, *RxXDP, *TxXDP) {
	t.Helper()
	f, s, err := xsk.NewFake(1024, 4096, ringSize, 2*pipeline.MaxBatch)
	if err != nil {
		t.Fatal(err)
	}
	rx := &RxXDP{Interface: "fake0", Receive: "busy", busy: true, batch: pipeline.MaxBatch, sock: s, log: slog.New(slog.DiscardHandler)}
	rx.owner = rx
	rx.fd.Store(-1)
	s.SetReserve(pipeline.MaxBatch)
	if err := s.Refill(); err != nil {
		t.Fatal(err)
	}
	res := &resolver{}
	res.mac.Store(macValid | 0x020000000002)
	tx := &TxXDP{Interface: "fake0", res: res, rx: rx, sock: s, owner: rx.owner, drops: &pipeline.DropCounter{}}
	copy(tx.src[:], ifMAC)
	return f, rx, tx
}

// frame is a 60-byte Ethernet frame whose destination and source MACs are
// 0xee, then an IPv4 EtherType and a payload marked with id.
func frame(id byte) []byte {
	b := make([]byte, 60)
	for i := range 12 {
		b[i] = 0xee
	}
	b[12], b[13] = 0x08, 0x00
	b[14] = id
	return b
}

// runBatch pulls one batch and pushes every packet to tx, as the engine
// does for rx -> tx, with prepend bytes of encapsulation first.
func runBatch(t testing.TB, rx *RxXDP, tx *TxXDP, b *pipeline.Batch, prepend int) {
	b.Reset()
	if err := rx.Pull(b); err != nil {
		t.Fatal(err)
	}
	tx.StartBatch(b.Now)
	if prepend > 0 {
		for _, p := range b.Pkts[:b.N] {
			p.Prepend(prepend)
		}
	}
	pushAll(tx, b.Pkts[:b.N], true)
	tx.EndBatch()
}

// push pushes p to tx and, when tx drops it, counts and recycles it as
// the engine would.
func push(tx *TxXDP, p *pipeline.Packet) {
	if tx.Push(0, p) == pipeline.Drop {
		tx.drops.Drop(p)
	}
}

// pushAll pushes q to tx as the engine does: with batch, through
// PushBatch and, for each packet it stops at, Push; else Push alone.
func pushAll(tx *TxXDP, q []*pipeline.Packet, batch bool) {
	for len(q) > 0 {
		k := 0
		if batch {
			k = tx.PushBatch(0, q, nil)
		}
		if k == len(q) {
			return
		}
		push(tx, q[k])
		q = q[k+1:]
	}
}

func checkSocket(t testing.TB, s *xsk.Socket) {
	t.Helper()
	if err := s.Check(); err != nil {
		t.Fatalf("frame accounting: %v (%s)", err, s)
	}
}

func TestPullPushInPlace(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	for i := range 3 {
		f.Deliver(frame(byte(i)))
	}
	var b pipeline.Batch
	b.Reset()
	if err := rx.Pull(&b); err != nil {
		t.Fatal(err)
	}
	if b.N != 3 || b.Now <= 0 {
		t.Fatalf("pulled %d packets at %d, want 3 at a positive time", b.N, b.Now)
	}
	p := b.Pkts[0]
	if p.Headroom() != pipeline.Headroom || p.Len() != 60 || p.Owner != rx.owner || p.Time != b.Now {
		t.Fatalf("packet headroom %d len %d owner %v time %d", p.Headroom(), p.Len(), p.Owner, p.Time)
	}
	tx.StartBatch(b.Now)
	// The first packet is encapsulated (20 bytes prepended, as IPIP
	// would), the second sent as is, the third dropped downstream.
	d := b.Pkts[0].Prepend(20)
	copy(d[:14], frame(9)[:14])
	push(tx, b.Pkts[0])
	push(tx, b.Pkts[1])
	b.Pkts[2].Recycle()
	tx.EndBatch()
	checkSocket(t, rx.sock)
	if len(f.Sent) != 2 {
		t.Fatalf("sent %d packets, want 2", len(f.Sent))
	}
	if len(f.Sent[0]) != 80 || !bytes.Equal(f.Sent[0][:6], gwMAC) || !bytes.Equal(f.Sent[0][6:12], ifMAC) || f.Sent[0][34] != 0 {
		t.Errorf("encapsulated packet % x", f.Sent[0][:40])
	}
	if len(f.Sent[1]) != 60 || f.Sent[1][14] != 1 {
		t.Errorf("second packet % x", f.Sent[1][:20])
	}
	if tx.pub.sent.Load() != 2 || rx.sock.Count(xsk.Rx) != 0 || rx.sock.Count(xsk.Tx) != 0 {
		t.Errorf("sent %d, %s", tx.pub.sent.Load(), rx.sock)
	}
}

func TestNoNeighborDrops(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	tx.res.mac.Store(0)
	for i := range 5 {
		f.Deliver(frame(byte(i)))
	}
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	checkSocket(t, rx.sock)
	if got := tx.drops.Count(reasonNoNeighbor); got != 5 || f.NumSent != 0 {
		t.Errorf("no_neighbor drops %d sent %d, want 5 and 0", got, f.NumSent)
	}
	if rx.sock.Count(xsk.Rx) != 0 {
		t.Errorf("dropped frames not recycled: %s", rx.sock)
	}
	// Resolution takes effect at the next batch.
	tx.res.mac.Store(macValid | 0x020000000002)
	f.Deliver(frame(1))
	runBatch(t, rx, tx, &b, 0)
	if f.NumSent != 1 {
		t.Errorf("sent %d after resolution, want 1", f.NumSent)
	}
}

func TestTxRingFullDrops(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.TxSize, f.TxBudget = 16, 0
	for i := range 40 {
		f.Deliver(frame(byte(i)))
	}
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	checkSocket(t, rx.sock)
	if got := tx.drops.Count(reasonRingFull); got != 24 || tx.pub.sent.Load() != 16 || tx.pub.ringFullEvents.Load() != 1 {
		t.Errorf("ring-full drops %d sent %d events %d, want 24, 16, 1", got, tx.pub.sent.Load(), tx.pub.ringFullEvents.Load())
	}
	f.TxBudget = 32
	runBatch(t, rx, tx, &b, 0)
	if rx.sock.Count(xsk.Tx) != 0 {
		t.Errorf("completions not reaped: %s", rx.sock)
	}
	checkSocket(t, rx.sock)
}

// TestTxRingFullCountedOnce: ring-full drops are counted once, by the
// TxXDP whose EndBatch finds them, even with two TxXDPs on one socket;
// RxXDP, which owns the socket, reports none.
func TestTxRingFullCountedOnce(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	tx2 := &TxXDP{Interface: "fake0", res: tx.res, rx: rx, sock: rx.sock, owner: rx.owner, drops: &pipeline.DropCounter{}}
	f.TxSize, f.TxBudget = 16, 0
	for i := range 40 {
		f.Deliver(frame(byte(i)))
	}
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	tx2.StartBatch(0)
	tx2.EndBatch()
	if a, b := tx.drops.Count(reasonRingFull), tx2.drops.Count(reasonRingFull); a != 24 || b != 0 {
		t.Errorf("ring-full drops %d and %d, want 24 at the TxXDP that queued them and 0", a, b)
	}
	rx.Stats(func(m pipeline.Metric) {
		if strings.Contains(m.Name, "drop") && !strings.Contains(m.Name, "kernel") {
			t.Errorf("RxXDP reports %s: drops are counted once, by the engine", m.Name)
		}
	})
}

func TestForeignPacketCopied(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	buf := make([]byte, pipeline.Headroom+60)
	copy(buf[pipeline.Headroom:], frame(7))
	var p pipeline.Packet
	p.SetFrame(buf, pipeline.Headroom, len(buf))
	tx.StartBatch(0)
	push(tx, &p)
	big := make([]byte, 8000)
	p.SetFrame(big, 0, len(big))
	push(tx, &p)
	tx.EndBatch()
	checkSocket(t, rx.sock)
	if len(f.Sent) != 1 || f.Sent[0][14] != 7 || tx.pub.copied.Load() != 1 || tx.drops.Count(reasonTooBig) != 1 {
		t.Errorf("sent %d, copied %d, too big %d", len(f.Sent), tx.pub.copied.Load(), tx.drops.Count(reasonTooBig))
	}
}

func TestRuntDropped(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Deliver(frame(1)[:10])
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	checkSocket(t, rx.sock)
	if tx.drops.Count(reasonRunt) != 1 || rx.sock.Count(xsk.Rx) != 0 {
		t.Errorf("runt drops %d, %s", tx.drops.Count(reasonRunt), rx.sock)
	}
}

// TestSteadyStateAllocs: a batch through Pull, Push and EndBatch
// allocates nothing.
func TestSteadyStateAllocs(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	pkt := frame(1)
	var b pipeline.Batch
	allocs := testing.AllocsPerRun(200, func() {
		for range pipeline.MaxBatch {
			f.Deliver(pkt)
		}
		runBatch(t, rx, tx, &b, 20)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch, want 0", allocs)
	}
	checkSocket(t, rx.sock)
	if f.NumSent != 201*pipeline.MaxBatch {
		t.Errorf("sent %d, want %d", f.NumSent, 201*pipeline.MaxBatch)
	}
}

func BenchmarkPullPushEndBatch(b *testing.B) {
	f, rx, tx := fakePair(b, 512)
	pkt := frame(1)
	var batch pipeline.Batch
	b.ReportAllocs()
	for b.Loop() {
		for range pipeline.MaxBatch {
			f.Deliver(pkt)
		}
		runBatch(b, rx, tx, &batch, 20)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pipeline.MaxBatch), "ns/packet")
}

func TestNeighUsable(t *testing.T) {
	mac := []byte{0x02, 0, 0, 0, 0, 0x09}
	tests := []struct {
		name    string
		state   int
		hw      []byte
		deleted bool
		want    bool
	}{
		{"reachable", 0x02, mac, false, true},
		{"stale is still used, as the kernel does", 0x04, mac, false, true},
		{"delay", 0x08, mac, false, true},
		{"probe", 0x10, mac, false, true},
		{"permanent", 0x80, mac, false, true},
		{"incomplete", 0x01, nil, false, false},
		{"failed", 0x20, mac, false, false},
		{"deleted", 0x02, mac, true, false},
		{"zero address", 0x02, make([]byte, 6), false, false},
		{"no address", 0x02, nil, false, false},
	}
	for _, tt := range tests {
		v, ok := neighUsable(tt.state, tt.hw, tt.deleted)
		if ok != tt.want {
			t.Errorf("%s: usable %v, want %v", tt.name, ok, tt.want)
		}
		if ok && v != macValid|0x020000000009 {
			t.Errorf("%s: value %#x", tt.name, v)
		}
	}
}

// TestNoGatewayKeepsDestination: a TxXDP without a gateway (behind
// FragRedirect) sends the frame to the destination MAC address already in
// it, with the interface's as the source, and never drops for want of a
// neighbour.
func TestNoGatewayKeepsDestination(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	tx.res = nil
	peer := []byte{0x02, 0, 0, 0, 0x0b, 0x03}
	fr := frame(1)
	copy(fr[:6], peer)
	f.Deliver(fr)
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	checkSocket(t, rx.sock)
	if len(f.Sent) != 1 || !bytes.Equal(f.Sent[0][:6], peer) || !bytes.Equal(f.Sent[0][6:12], ifMAC) || !bytes.Equal(f.Sent[0][12:], fr[12:]) {
		t.Fatalf("sent %d packets, first % x", len(f.Sent), f.Sent)
	}
	if tx.drops.Count(reasonNoNeighbor) != 0 {
		t.Errorf("no_neighbor drops without a gateway")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		set  func(r *RxXDP)
		attr string
	}{
		{"defaults", func(r *RxXDP) {}, ""},
		{"no interface", func(r *RxXDP) { r.Interface = "" }, "interface"},
		{"mode", func(r *RxXDP) { r.Mode = "skb" }, "mode"},
		{"receive", func(r *RxXDP) { r.Receive = "spin" }, "receive"},
		{"queue", func(r *RxXDP) { r.Queue = -2 }, "queue"},
		{"frames", func(r *RxXDP) { r.Frames = 1000 }, "frames"},
		{"frame size", func(r *RxXDP) { r.FrameSize = 1500 }, "frame_size"},
		{"poll timeout", func(r *RxXDP) { r.PollTimeout = "10" }, "poll_timeout"},
		{"rx ring", func(r *RxXDP) { r.RxRing = 16384 }, "rx_ring"}, // above frames/2: the fill ring could not be kept full
		{"rx ring power of two", func(r *RxXDP) { r.RxRing = 1000 }, "rx_ring"},
		{"rx ring set", func(r *RxXDP) { r.Frames, r.RxRing = 16384, 8192 }, ""},
		{"tx ring", func(r *RxXDP) { r.TxRing = 64 }, "tx_ring"}, // below a TX flush's 128
		{"tx ring set", func(r *RxXDP) { r.TxRing = 512 }, ""},
		{"batch", func(r *RxXDP) { r.Batch = 65 }, "batch"},
		{"batch set", func(r *RxXDP) { r.Batch = 16 }, ""},
		{"busy poll", func(r *RxXDP) { r.BusyPoll = "5us" }, "busy_poll"},
		{"busy poll set", func(r *RxXDP) { r.BusyPoll = "50us" }, ""},
	}
	typ, _ := pipeline.Lookup("RxXDP")
	for _, tt := range tests {
		r := typ.New().(*RxXDP)
		r.Interface = "eth0"
		tt.set(r)
		err := r.Validate()
		ae, _ := err.(*pipeline.AttrError)
		if (tt.attr == "" && err != nil) || (tt.attr != "" && (ae == nil || ae.Attr != tt.attr)) {
			t.Errorf("%s: %v, want an error on %q", tt.name, err, tt.attr)
		}
	}
	tx := &TxXDP{Interface: "eth0", Gateway: "10.0.0.1"}
	if err := tx.Validate(); err != nil {
		t.Error(err)
	}
	tx.Gateway = ""
	if err := tx.Validate(); err != nil {
		t.Errorf("no gateway (the frame's destination kept): %v", err)
	}
	tx.Gateway = "gw"
	if ae, ok := tx.Validate().(*pipeline.AttrError); !ok || ae.Attr != "gateway" {
		t.Errorf("bad gateway accepted: %v", tx.Validate())
	}
}

// TestSpareSentInPlace: RxXDP lends spares from its socket's reserve, which
// the kernel's fill ring never takes; TxXDP sends a spare in place like a
// received frame, a recycled one goes back to the free list, and a batch
// gets at most MaxBatch.
// TestBatchLimit: with batch set, a receive takes at most that many
// packets from the RX ring and leaves the rest for the next.
func TestBatchLimit(t *testing.T) {
	f, rx, tx := fakePair(t, 256)
	f.Record = true
	rx.batch = 16
	for i := range 40 {
		f.Deliver(frame(byte(i)))
	}
	var b pipeline.Batch
	for _, want := range []int{16, 16, 8, 0} {
		runBatch(t, rx, tx, &b, 0)
		if b.N != want {
			t.Errorf("batch of %d, want %d", b.N, want)
		}
	}
	if len(f.Sent) != 40 {
		t.Errorf("sent %d of 40", len(f.Sent))
	}
	checkSocket(t, rx.sock)
	if f.BusyPolls != 0 {
		t.Errorf("%d busy polls without busy_poll", f.BusyPolls)
	}
	rx.busyPoll = true
	runBatch(t, rx, tx, &b, 0)
	if f.BusyPolls != 1 {
		t.Errorf("%d busy polls in a receive with busy_poll, want 1", f.BusyPolls)
	}
}

func TestSpareSentInPlace(t *testing.T) {
	f, rx, tx := fakePair(t, 2048) // a fill ring with room for every frame
	f.Record = true
	f.Deliver(frame(1))
	var b pipeline.Batch
	b.Reset()
	if err := rx.Pull(&b); err != nil || b.N != 1 {
		t.Fatalf("pulled %d (%v)", b.N, err)
	}
	tx.StartBatch(b.Now)
	s := rx.Spare()
	if s == nil || s.Owner != rx.owner || s.Len() != 0 || s.Headroom() != xsk.Headroom {
		t.Fatalf("spare %+v", s)
	}
	copy(s.Extend(60), frame(2))
	push(tx, s)
	push(tx, b.Pkts[0])
	rx.Spare().Recycle()
	n := 2
	for rx.Spare() != nil {
		n++
	}
	if n != pipeline.MaxBatch {
		t.Errorf("a batch got %d spares, want %d", n, pipeline.MaxBatch)
	}
	tx.EndBatch()
	if len(f.Sent) != 2 || f.Sent[0][14] != 2 || f.Sent[1][14] != 1 {
		t.Fatalf("sent %d packets", len(f.Sent))
	}
	// The spares left unsent and unrecycled are a leak the test makes on
	// purpose: they stay held (rx), the rest is accounted.
	checkSocket(t, rx.sock)
	if rx.sock.Count(xsk.Rx) != pipeline.MaxBatch-2 {
		t.Errorf("%s: want %d held", rx.sock, pipeline.MaxBatch-2)
	}
}

// TestPushBatchAsPush: TxXDP's PushBatch, with Push taking what it stops
// at, sends the same frames in the same order as Push alone, with the
// same counters, over a batch that mixes every case: frames sent in
// place (encapsulated, OnLink, IPv6 to the second gateway), a runt, an
// IPv6 frame whose gateway is unresolved, a frame sent twice (the second
// time refused by the socket), and packets from outside the UMEM, copied
// or too big.
func TestPushBatchAsPush(t *testing.T) {
	type result struct {
		sent                   [][]byte
		pubSent, copied        uint64
		drops                  map[pipeline.Reason]uint64
		held, queued, inFlight int
	}
	run := func(batch bool) result {
		f, rx, tx := fakePair(t, 512)
		f.Record = true
		tx.res6 = &resolver{}
		v6 := func(id byte) []byte {
			fr := frame(id)
			fr[12], fr[13] = 0x86, 0xdd
			return fr
		}
		for i, fr := range [][]byte{frame(0), frame(1), frame(2)[:10], v6(3), frame(4), frame(5), frame(6), v6(7)} {
			if i == 6 {
				copy(fr[:6], []byte{2, 0, 0, 0, 0xb, 6})
			}
			f.Deliver(fr)
		}
		var b pipeline.Batch
		if err := rx.Pull(&b); err != nil || b.N != 8 {
			t.Fatalf("pulled %d (%v)", b.N, err)
		}
		tx.StartBatch(b.Now)
		copy(b.Pkts[1].Prepend(20)[:14], frame(9)[:14])
		b.Pkts[6].OnLink = true
		foreign := func(n int, id byte) *pipeline.Packet {
			buf := make([]byte, pipeline.Headroom+n)
			copy(buf[pipeline.Headroom:], frame(id))
			p := &pipeline.Packet{}
			p.SetFrame(buf, pipeline.Headroom, len(buf))
			return p
		}
		q := []*pipeline.Packet{b.Pkts[0], b.Pkts[1], b.Pkts[2], b.Pkts[3], b.Pkts[4], b.Pkts[4], foreign(60, 10), b.Pkts[5], foreign(8000, 11), b.Pkts[6], b.Pkts[7]}
		pushAll(tx, q[:5], batch)
		// Resolved from here on, the next batch's state: IPv6 frames go
		// to the second gateway.
		tx.res6.mac.Store(macValid | 0x020000000006)
		tx.StartBatch(b.Now)
		pushAll(tx, q[5:], batch)
		tx.EndBatch()
		checkSocket(t, rx.sock)
		r := result{sent: f.Sent, pubSent: tx.pub.sent.Load(), copied: tx.pub.copied.Load(), drops: map[pipeline.Reason]uint64{},
			held: rx.sock.Count(xsk.Rx), queued: rx.sock.Count(xsk.Queued), inFlight: rx.sock.Count(xsk.Tx)}
		for _, reason := range []pipeline.Reason{reasonRunt, reasonNoNeighbor, reasonTooBig, reasonNoFrame, reasonBadFrame, reasonRingFull} {
			r.drops[reason] = tx.drops.Count(reason)
		}
		return r
	}
	want, got := run(false), run(true)
	if len(want.sent) != 7 || want.pubSent != 7 || want.copied != 1 || want.drops[reasonRunt] != 1 || want.drops[reasonNoNeighbor] != 1 ||
		want.drops[reasonTooBig] != 1 || want.drops[reasonBadFrame] != 1 {
		t.Fatalf("Push alone: sent %d, copied %d, drops %v: not every case", len(want.sent), want.copied, want.drops)
	}
	if !slices.EqualFunc(got.sent, want.sent, bytes.Equal) {
		t.Errorf("PushBatch sent\n% x\nPush\n% x", got.sent, want.sent)
	}
	if got.pubSent != want.pubSent || got.copied != want.copied || !maps.Equal(got.drops, want.drops) ||
		got.held != want.held || got.queued != want.queued || got.inFlight != want.inFlight {
		t.Errorf("PushBatch's counts %+v, Push's %+v", got, want)
	}
}
