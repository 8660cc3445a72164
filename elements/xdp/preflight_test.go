package xdp

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/xlbproject/xlb/internal/testenv"

	"golang.org/x/sys/unix"
)

func TestPreflightInterface(t *testing.T) {
	errs := (&TxXDP{Interface: "xlbnope0"}).Preflight()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), `interface "xlbnope0" does not exist`) {
		t.Errorf("Preflight of a missing interface: %v", errs)
	}
}

func TestPreflightCapabilities(t *testing.T) {
	var errs []error
	testenv.OnThreadWithout(t, nil, func() { errs = (&TxXDP{Interface: "lo"}).Preflight() })
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "xlbd lacks CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF: run it as root") {
		t.Errorf("Preflight without capabilities: %v", errs)
	}
}

func TestPreflightMemlock(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	size := lim.Cur + 4096
	if lim.Cur == unix.RLIM_INFINITY {
		size = 1 << 62
	}
	var err error
	testenv.OnThreadWithout(t, nil, func() { err = memlock(size) })
	if lim.Cur == unix.RLIM_INFINITY {
		if err != nil {
			t.Errorf("no locked-memory limit, yet: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "raise it (ulimit -l unlimited; systemd: LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK") {
		t.Errorf("memlock(%d) over a limit of %d without CAP_IPC_LOCK: %v", size, lim.Cur, err)
	}
	testenv.OnThreadWithout(t, []uint{capIPCLock}, func() { err = memlock(size) })
	if err != nil && (unix.Geteuid() == 0) {
		t.Errorf("memlock with CAP_IPC_LOCK: %v", err)
	}
}

// TestModeProblem: native mode is refused, naming the fix, on a driver the
// kernel says lacks native XDP_PASS or XDP_REDIRECT; generic mode, a
// capable driver and a kernel that cannot say pass.
func TestModeProblem(t *testing.T) {
	const capable = xdpActBasic | xdpActRedirect | 1<<2
	for _, c := range []struct {
		mode     string
		features uint64
		known    bool
		refused  bool
	}{
		{"native", capable, true, false},
		{"", capable, true, false},
		{"native", 0, true, true},
		{"native", xdpActBasic, true, true},
		{"native", xdpActRedirect, true, true},
		{"native", 0, false, false},
		{"generic", 0, true, false},
	} {
		err := modeProblem("eth0", c.mode, c.features, c.known)
		if (err != nil) != c.refused {
			t.Errorf("mode %q, features %#x (known %v): %v, want refused %v", c.mode, c.features, c.known, err, c.refused)
		}
		if err != nil && !strings.Contains(err.Error(), `interface "eth0" cannot run XDP in native mode`) ||
			err != nil && !strings.Contains(err.Error(), `set mode = "generic" on the element`) {
			t.Errorf("the refusal does not name the interface and the fix: %v", err)
		}
	}
}

// TestPreflightMode: an RxXDP asking for native mode on an interface
// whose driver the kernel says lacks it is refused before anything is
// attached; generic mode, or a kernel that does not say, is not.
func TestPreflightMode(t *testing.T) {
	none := func(int) (uint64, bool) { return 0, true }
	unknown := func(int) (uint64, bool) { return 0, false }
	r := &RxXDP{Interface: "lo", Mode: "native"}
	if err := r.modePreflight(none); err == nil || !strings.Contains(err.Error(), `interface "lo" cannot run XDP in native mode`) {
		t.Errorf("native mode on a driver without XDP: %v", err)
	}
	if err := r.modePreflight(unknown); err != nil {
		t.Errorf("native mode when the kernel does not say: %v", err)
	}
	r.Mode = "generic"
	if err := r.modePreflight(none); err != nil {
		t.Errorf("generic mode: %v", err)
	}
}

// TestXDPFeaturesLoopback: the kernel says the loopback interface has no
// native XDP_REDIRECT (on kernels that say: Linux 6.3 and later; this
// one's dump fails now and then, hence the tries).
func TestXDPFeaturesLoopback(t *testing.T) {
	if _, err := netlink.GenlFamilyGet("netdev"); err != nil {
		t.Skip("this kernel does not report XDP features (Linux 6.3 and later do)")
	}
	ifc, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if features, known := xdpFeatures(ifc.Index); known {
			if features&xdpActRedirect != 0 {
				t.Fatalf("lo reports native XDP_REDIRECT (%#x)", features)
			}
			return
		}
	}
	t.Fatal("the kernel has the netdev family but never said what lo can do")
}
