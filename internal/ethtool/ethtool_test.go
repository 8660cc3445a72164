package ethtool

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xlbproject/xlb/internal/testenv"
)

// inNewNS runs fn on a locked thread in a new, empty network namespace
// holding a veth pair "a"/"b" as the lab makes them: the kernel allocates
// an RX queue per possible CPU and uses one.
func inNewNS(t *testing.T, fn func()) {
	testenv.RequireRoot(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "a"}, PeerName: "b"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Error(err)
			return
		}
		fn()
	}()
	<-done
}

func TestRxQueuesAndChecksum(t *testing.T) {
	inNewNS(t, func() {
		l, err := netlink.LinkByName("a")
		if err != nil {
			t.Fatal(err)
		}
		n, err := RxQueues("a")
		if err != nil || n != 1 {
			t.Errorf("RxQueues(a) = %d, %v; want 1 (the device allocates %d)", n, err, l.Attrs().NumRxQueues)
		}
		for _, on := range []bool{false, true, false} {
			if err := SetTxChecksum("a", on); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := RxQueues("nonexistent0"); err == nil {
			t.Error("RxQueues of a missing interface must fail")
		}
	})
}

// TestStats: veth's statistics by name, per RX queue.
func TestStats(t *testing.T) {
	inNewNS(t, func() {
		m, err := Stats("a")
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"peer_ifindex", "rx_queue_0_xdp_packets"} {
			if _, ok := m[name]; !ok {
				t.Errorf("no %s in %v", name, m)
			}
		}
		if _, err := Stats("nonexistent0"); err == nil {
			t.Error("Stats of a missing interface must fail")
		}
	})
}
