package xdp

import (
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// onThreadWithout runs fn on a thread that dropped every effective
// capability but keep: capabilities are per thread, so the test's other
// threads keep theirs. The thread is never unlocked, so the runtime
// discards it afterwards.
func onThreadWithout(t *testing.T, keep []uint, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		var eff [2]uint32
		for _, c := range keep {
			eff[c/32] |= 1 << (c % 32)
		}
		data[0].Effective &= eff[0]
		data[1].Effective &= eff[1]
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPreflightInterface(t *testing.T) {
	errs := (&TxXDP{Interface: "xlbnope0"}).Preflight()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), `interface "xlbnope0" does not exist`) {
		t.Errorf("Preflight of a missing interface: %v", errs)
	}
}

func TestPreflightCapabilities(t *testing.T) {
	var errs []error
	onThreadWithout(t, nil, func() { errs = (&TxXDP{Interface: "lo"}).Preflight() })
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
	onThreadWithout(t, nil, func() { err = memlock(size) })
	if lim.Cur == unix.RLIM_INFINITY {
		if err != nil {
			t.Errorf("no locked-memory limit, yet: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "raise it (ulimit -l unlimited; systemd: LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK") {
		t.Errorf("memlock(%d) over a limit of %d without CAP_IPC_LOCK: %v", size, lim.Cur, err)
	}
	onThreadWithout(t, []uint{capIPCLock}, func() { err = memlock(size) })
	if err != nil && (unix.Geteuid() == 0) {
		t.Errorf("memlock with CAP_IPC_LOCK: %v", err)
	}
}
