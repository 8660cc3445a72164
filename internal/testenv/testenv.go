// Package testenv decides what a test does when the machine lacks
// something it needs (root, network namespaces, a tool): skip with a message
// saying what is missing, or, when XLB_E2E=1 (as .ci/run sets), fail, so
// that CI is never green by skipping the real thing.
package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// E2E reports whether end-to-end tests are required (XLB_E2E=1).
func E2E() bool { return os.Getenv("XLB_E2E") == "1" }

// Missing skips the test, or fails it under XLB_E2E=1, saying what it needs.
func Missing(t testing.TB, what string) {
	t.Helper()
	if E2E() {
		t.Fatalf("XLB_E2E=1 but this test cannot run: it needs %s", what)
	}
	t.Skipf("skipped: needs %s (set XLB_E2E=1 to make this a failure)", what)
}

// RequireRoot needs the effective user to be root (for network namespaces,
// XDP and raw sockets).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root (network namespaces, XDP and raw sockets)")
	}
}

// RequireTool needs an executable on PATH and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "the tool "+name+" on PATH (make test installs it)")
	}
	return p
}

// Buffer is a bytes.Buffer safe for concurrent use: the output of a logger
// that goroutines (plugin supervisors, a daemon's loops) share with a test.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Len returns how many bytes were written so far: a mark for String()[mark:].
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Len()
}

// OnThreadWithout runs fn on a thread that dropped every effective
// capability but keep (capability numbers, as in linux/capability.h):
// capabilities are per thread, so the test's other threads keep theirs.
// The thread is never unlocked, so the runtime discards it afterwards.
func OnThreadWithout(t testing.TB, keep []uint, fn func()) {
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
