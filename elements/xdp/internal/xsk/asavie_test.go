package xsk

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"github.com/xlbproject/xlb/internal/testenv"
)

// TestRealSocket opens a socket on a veth in a namespace of its own (no
// XDP program is needed to transmit), sends frames copied into the UMEM
// and checks that every frame comes back through the completion ring,
// that the accounting holds, and that the steady-state path allocates
// nothing.
func TestRealSocket(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip")
	ns := fmt.Sprintf("xlbx-%d-xsk", os.Getpid())
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "add", "name", "xa", "type", "veth", "peer", "name", "xb"},
		{"-n", ns, "link", "set", "xa", "up"},
		{"-n", ns, "link", "set", "xb", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	type result struct {
		s   *Socket
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(ns)
		if err == nil {
			err = netns.Set(h)
		}
		if err != nil {
			rc <- result{err: err}
			return
		}
		ifc, err := net.InterfaceByName("xa")
		if err != nil {
			rc <- result{err: err}
			return
		}
		s, err := Open(ifc.Index, 0, Options{Frames: 512, FrameSize: 4096, TxBatch: 128})
		rc <- result{s, err}
	}()
	r := <-rc
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.s
	defer s.Close()
	if zc, err := ZeroCopy(s); err != nil || zc {
		t.Logf("zero-copy %v (%v)", zc, err)
	}
	if err := s.Refill(); err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5}) // broadcast, local experimental EtherType
	var d [64]Desc
	batch := func() {
		for range 64 {
			a, ok := s.Alloc()
			if !ok {
				break
			}
			copy(s.Frame(a)[Headroom:], frame)
			s.Queue(a+Headroom, len(frame))
		}
		s.Flush()
		s.Receive(d[:])
		s.Refill()
	}
	for range 10 {
		batch()
	}
	allocs := testing.AllocsPerRun(100, batch)
	deadline := time.Now().Add(2 * time.Second)
	for s.Count(Tx) > 0 && time.Now().Before(deadline) {
		s.Reap()
		time.Sleep(time.Millisecond)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("accounting: %v (%s)", err, s)
	}
	if s.Count(Tx) != 0 || s.C.Completed != s.C.Transmitted || s.C.Transmitted == 0 {
		t.Errorf("transmitted %d, completed %d, %s", s.C.Transmitted, s.C.Completed, s)
	}
	if allocs != 0 {
		t.Errorf("%.1f allocations per batch on a real socket, want 0", allocs)
	}
	t.Logf("counters %+v", s.C)
	st, err := KernelStats(FD(s))
	if err != nil || st.Tx_invalid_descs != 0 {
		t.Errorf("kernel stats %+v, %v", st, err)
	}
}
