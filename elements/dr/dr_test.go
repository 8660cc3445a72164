package dr

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// Reals of the test snapshot: on lo's 127.0.0.0/8, off it, and static.
const (
	realOnLink = 1 // 127.0.0.21, followed
	realOff    = 2 // 10.9.9.9, not on lo's segment
	realStatic = 3 // 127.0.0.23, in macs
	epoch      = 5
)

func testReal(id uint32, name, addr string) snapshot.Real {
	a := netip.MustParseAddr(addr)
	return snapshot.Real{ID: id, Epoch: epoch, Backend: name, Addr: a, Addr16: a.As16(), Family: 4, Weight: 1}
}

func testSnapshot() *snapshot.Snapshot {
	vip := snapshot.VIP{Name: "web", Addr: netip.MustParseAddr("192.0.2.10"), Proto: 6, Reals: []uint32{realOnLink, realOff, realStatic}}
	return snapshot.New(1, 42, []snapshot.VIP{vip}, []snapshot.Real{{},
		testReal(realOnLink, "be1", "127.0.0.21"),
		testReal(realOff, "far", "10.9.9.9"),
		testReal(realStatic, "be3", "127.0.0.23"),
	})
}

// fakeNeighbors stands for RxXDP's neighbour table: every followed address
// shares one MAC address the test sets.
type fakeNeighbors struct {
	mu       sync.Mutex
	followed []netip.Addr
	released atomic.Int32
	mac      atomic.Uint64 // 1<<48 | address, 0 while unresolved
}

func (f *fakeNeighbors) Follow(a netip.Addr, _ *pipeline.Context) (pipeline.Neighbor, error) {
	f.mu.Lock()
	f.followed = append(f.followed, a)
	f.mu.Unlock()
	return fakeNeighbor{f}, nil
}

type fakeNeighbor struct{ f *fakeNeighbors }

func (n fakeNeighbor) MAC() (mac [6]byte, ok bool) {
	m := n.f.mac.Load()
	for i := range mac {
		mac[i] = byte(m >> (40 - 8*i))
	}
	return mac, m != 0
}

func (n fakeNeighbor) Release() { n.f.released.Add(1) }

// newTestDR provisions a DirectRoute on lo over the test snapshot, with
// nbs as lo's neighbour table.
func newTestDR(t testing.TB, nbs *fakeNeighbors) *DirectRoute {
	return newTestDRLog(t, nbs, nil)
}

// newTestDRLog is newTestDR logging to log, if not nil.
func newTestDRLog(t testing.TB, nbs *fakeNeighbors, log *slog.Logger) *DirectRoute {
	t.Helper()
	ctx := pipeline.NewContext("dr", 0, 1, snapshot.ContextValues(snapshot.NewStore(testSnapshot())))
	if log != nil {
		ctx.Logger = log
	}
	ctx.Shared(pipeline.NeighborKey{Interface: "lo"}, func() any { return nbs })
	e := &DirectRoute{Interface: "lo", MACs: map[string]string{"127.0.0.23": "02:00:00:00:be:03"}}
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Cleanup() })
	return e
}

// frame is an Ethernet frame with an IPv4 EtherType and a dummy payload.
func frame() []byte {
	b := make([]byte, 64)
	copy(b, []byte{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, 0x45})
	return b
}

// push runs one packet for real id through e in a batch of its own.
func push(e *DirectRoute, p *pipeline.Packet, id uint32) int {
	p.SetFrame(frame(), 0, 64)
	p.Backend, p.Epoch = id, epoch
	e.view.StartBatch(0)
	e.StartBatch(0)
	port := e.Push(0, p)
	e.EndBatch()
	e.view.EndBatch()
	return port
}

// TestFollowsNeighbour: a backend on the interface's segment is followed
// in the neighbour table; its packets are dr.unresolved drops until its
// MAC address is known, then leave with it as destination, marked OnLink
// and otherwise unchanged, and follow a change of it. A backend off the
// segment is dr.not_connected and never followed; a static one needs no
// table. Cleanup releases the followed neighbour.
func TestFollowsNeighbour(t *testing.T) {
	nbs := &fakeNeighbors{}
	e := newTestDR(t, nbs)
	var p pipeline.Packet
	if port := push(e, &p, realOnLink); port != portBad || p.Reason != reasonUnresolved {
		t.Fatalf("unresolved backend: port %d reason %v, want bad, dr.unresolved", port, p.Reason)
	}
	// Follow runs off the worker's goroutine; wait for it to be in place.
	deadline := time.Now().Add(10 * time.Second)
	for e.targets[realOnLink].nb.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the backend was never followed")
		}
		time.Sleep(time.Millisecond)
	}
	if port := push(e, &p, realOnLink); port != portBad || p.Reason != reasonUnresolved {
		t.Fatalf("followed, unresolved backend: port %d reason %v, want bad, dr.unresolved", port, p.Reason)
	}
	for _, mac := range []uint64{0x02000000be01, 0x02000000be11} {
		nbs.mac.Store(1<<48 | mac)
		if port := push(e, &p, realOnLink); port != portOut || !p.OnLink {
			t.Fatalf("resolved backend: port %d (reason %v), OnLink %v", port, p.Reason, p.OnLink)
		}
		want := frame()
		want[4], want[5] = byte(mac>>8), byte(mac)
		if !bytes.Equal(p.Data(), want) {
			t.Errorf("sent % x, want % x", p.Data(), want)
		}
	}
	if port := push(e, &p, realOff); port != portBad || p.Reason != reasonNotConnected {
		t.Errorf("backend off the segment: port %d reason %v, want bad, dr.not_connected", port, p.Reason)
	}
	if port := push(e, &p, realStatic); port != portOut || !bytes.Equal(p.Data()[:6], []byte{2, 0, 0, 0, 0xbe, 3}) {
		t.Errorf("static backend: port %d, destination % x", port, p.Data()[:6])
	}
	nbs.mu.Lock()
	followed := nbs.followed
	nbs.mu.Unlock()
	if len(followed) != 1 || followed[0] != netip.MustParseAddr("127.0.0.21") {
		t.Errorf("followed %v, want only 127.0.0.21", followed)
	}
	e.Cleanup()
	if n := nbs.released.Load(); n != 1 {
		t.Errorf("%d neighbours released, want 1", n)
	}
}

// TestPushAllocs: Push allocates nothing, resolved or not.
func TestPushAllocs(t *testing.T) {
	nbs := &fakeNeighbors{}
	nbs.mac.Store(1<<48 | 0x02000000be01)
	e := newTestDR(t, nbs)
	var p pipeline.Packet
	buf := frame()
	e.view.StartBatch(0)
	e.StartBatch(0)
	for _, id := range []uint32{realOnLink, realOff, realStatic} {
		if n := testing.AllocsPerRun(100, func() {
			p.SetFrame(buf, 0, len(buf))
			p.Backend, p.Epoch = id, epoch
			e.Push(0, &p)
		}); n != 0 {
			t.Errorf("real %d: %v allocations per packet", id, n)
		}
	}
	e.EndBatch()
	e.view.EndBatch()
}

// TestValidate: bad static addresses are refused, naming the attribute.
func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		e    *DirectRoute
		want string
	}{
		{&DirectRoute{MACs: map[string]string{"be1": "02:00:00:00:00:01"}}, "macs"},
		{&DirectRoute{MACs: map[string]string{"10.0.0.1": "02:00:00:00:00"}}, "macs"},
		{&DirectRoute{Source4: "nowhere"}, "source4"},
	} {
		err := tc.e.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %s: %v, want an error on %s", tc.e.MACs, tc.e.Source4, err, tc.want)
		}
	}
	if err := (&DirectRoute{MACs: map[string]string{"2001:db8::1": "02:00:00:00:00:01"}}).Validate(); err != nil {
		t.Error(err)
	}
}

// TestRefusedAtLoad: Provision names a backend off the interface's
// segments in an error before any packet, and starts following the
// others.
func TestRefusedAtLoad(t *testing.T) {
	var logged bytes.Buffer
	nbs := &fakeNeighbors{}
	newTestDRLog(t, nbs, slog.New(slog.NewTextHandler(&logged, nil)))
	if s := logged.String(); !strings.Contains(s, "level=ERROR") || !strings.Contains(s, `backends="far 10.9.9.9"`) {
		t.Errorf("logged %q, want an error naming far 10.9.9.9", s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nbs.mu.Lock()
		n := len(nbs.followed)
		nbs.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("127.0.0.21 not followed after Provision")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBackendCheck: the check a load runs (pipeline.BackendChecker)
// refuses a backend off lo's 127.0.0.0/8 unless macs gives its MAC
// address; without an interface there is nothing to check.
func TestBackendCheck(t *testing.T) {
	e := &DirectRoute{Interface: "lo", MACs: map[string]string{"10.9.9.8": "02:00:00:00:00:01"}}
	check := e.BackendCheck()
	if check == nil {
		t.Fatal("no check on lo")
	}
	for addr, ok := range map[string]bool{"127.0.0.21": true, "::ffff:127.0.0.22": true, "10.9.9.8": true, "10.9.9.9": false, "2001:db8::1": false} {
		err := check(netip.MustParseAddr(addr))
		if (err == nil) != ok {
			t.Errorf("%s: %v, want accepted %v", addr, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "not on a directly connected segment of lo (127.0.0.0/8") {
			t.Errorf("%s: %v", addr, err)
		}
	}
	for _, e := range []*DirectRoute{{}, {Interface: "xlb-no-such-if0"}} {
		if e.BackendCheck() != nil {
			t.Errorf("interface %q: a check, want none", e.Interface)
		}
	}
}
