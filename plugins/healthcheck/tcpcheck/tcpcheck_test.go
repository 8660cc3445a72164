package tcpcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// listen starts a loopback listener that accepts and closes connections
// until the test ends.
func listen(t *testing.T) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return acceptAndClose(t, ln)
}

// acceptAndClose accepts and closes ln's connections until the test ends.
func acceptAndClose(t *testing.T, ln net.Listener) *net.TCPAddr {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// closedPort is a loopback port with no listener (bound, then released).
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// fullBacklog is a loopback listener with a backlog of 0 that never
// accepts, filled until a connect hangs: Linux then drops further SYNs,
// so a connect to it lasts until its deadline.
func fullBacklog(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return port
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the backlog never filled")
	return 0
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestCheck(t *testing.T) {
	up := listen(t)
	down := closedPort(t)
	hung := fullBacklog(t)
	c := New()
	targets := []sdk.Target{
		{ID: 7, Name: "up", Address: "127.0.0.1", Port: uint16(up.Port)},
		{ID: 8, Name: "refused", Address: "127.0.0.1", Port: uint16(down)},
		{ID: 9, Name: "hung", Address: "127.0.0.1", Port: uint16(hung)},
		{ID: 10, Name: "noport", Address: "127.0.0.1"},
	}
	const timeout = 150 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	rs := c.Check(ctx, targets)
	elapsed := time.Since(start)
	if len(rs) != len(targets) {
		t.Fatalf("%d results for %d targets", len(rs), len(targets))
	}
	for i, want := range []struct {
		status sdk.Status
		msg    string
	}{
		{sdk.StatusPass, ""},
		{sdk.StatusFail, "connection refused"},
		{sdk.StatusFail, "i/o timeout"},
		{sdk.StatusFail, "no port"},
	} {
		r := rs[i]
		if r.ID != targets[i].ID || r.Status != want.status || !strings.Contains(r.Message, want.msg) {
			t.Errorf("%s: got %+v, want %v %q", targets[i].Name, r, want.status, want.msg)
		}
	}
	if rs[0].Latency <= 0 {
		t.Errorf("no latency measured: %v", rs[0].Latency)
	}
	// The hung connect ends at the deadline, not at the kernel's SYN
	// retransmission timeout (seconds).
	if rs[2].Latency < timeout/2 || elapsed > timeout+500*time.Millisecond {
		t.Errorf("hung target: latency %v, batch %v; want about %v", rs[2].Latency, elapsed, timeout)
	}
}

// TestBatch1000: a batch of 1,000 targets over a few listeners, well inside
// a 1 s tick (the time is logged, not asserted: CI machines vary).
func TestBatch1000(t *testing.T) {
	var ports []int
	for range 4 {
		ports = append(ports, listen(t).Port)
	}
	targets := make([]sdk.Target, 1000)
	for i := range targets {
		targets[i] = sdk.Target{ID: uint64(i), Address: "127.0.0.1", Port: uint16(ports[i%len(ports)])}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	rs := New().Check(ctx, targets)
	t.Logf("1,000 targets checked in %v", time.Since(start))
	for i, r := range rs {
		if r.ID != uint64(i) || r.Status != sdk.StatusPass {
			t.Fatalf("target %d: %+v", i, r)
		}
	}
}

// TestLateTargetsUnknown: targets whose turn comes after the deadline are
// not failed but left unknown, so the host holds their health.
func TestLateTargetsUnknown(t *testing.T) {
	hung := fullBacklog(t)
	c := New()
	if err := c.Configure([]byte(`{"concurrency": 1}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rs := c.Check(ctx, []sdk.Target{
		{Address: "127.0.0.1", Port: uint16(hung)},
		{Address: "127.0.0.1", Port: uint16(hung)},
	})
	if rs[0].Status != sdk.StatusFail || rs[1].Status != sdk.StatusUnknown {
		t.Errorf("got %+v, want fail then unknown", rs)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		config string
		attrs  []string
	}{
		{`{}`, nil},
		{`{"concurrency": 10}`, nil},
		{`{"concurrency": "10"}`, nil},
		{`{"port": 80}`, []string{"port"}}, // the health check's, not the plugin's
		{`{"concurrency": 0}`, []string{"concurrency"}},
		{`{"concurrency": [1]}`, []string{"concurrency"}},
	} {
		err := New().Configure([]byte(tc.config))
		var got []string
		for _, e := range sdk.Unjoin(err) {
			var ce *sdk.ConfigError
			if !errors.As(e, &ce) {
				t.Errorf("%s: %v is not a ConfigError", tc.config, e)
				continue
			}
			got = append(got, ce.Attribute)
		}
		if strings.Join(got, ",") != strings.Join(tc.attrs, ",") {
			t.Errorf("%s: errors %v name %v, want %v", tc.config, err, got, tc.attrs)
		}
	}
	c := New()
	if err := c.Configure([]byte(`{"concurrency": 0}`)); err == nil {
		t.Error("Configure accepted concurrency 0")
	}
	if in := c.Describe(); in.Version != Version || len(in.Schema) != 1 || len(in.Params) != 0 {
		t.Errorf("Describe = %+v", in)
	}
}

// paths are the two ways a batch is checked: connectAll (the epoll loop on
// Linux) and dialAll (net.Dialer, the portable path), which must agree.
var paths = []struct {
	name string
	run  func(context.Context, []sdk.Target, int, portFunc) []sdk.Result
}{
	{"epoll", connectAll},
	{"dialer", dialAll},
}

// targetPort is Check's port: the target's own.
func targetPort(t sdk.Target) (int, error) {
	if t.Port == 0 {
		return 0, errors.New("no port: set port in the health check")
	}
	return int(t.Port), nil
}

// TestPathsAgree: both paths give each target the same verdict and the
// same message, and a batch naming a host takes the dialer.
func TestPathsAgree(t *testing.T) {
	up := listen(t)
	down := closedPort(t)
	hung := fullBacklog(t)
	targets := []sdk.Target{
		{ID: 1, Address: "127.0.0.1", Port: uint16(up.Port)},
		{ID: 2, Address: "127.0.0.1", Port: uint16(down)},
		{ID: 3, Address: "127.0.0.1", Port: uint16(hung)},
		{ID: 4, Address: "127.0.0.1"},
		{ID: 5, Address: "::ffff:127.0.0.1", Port: uint16(up.Port)},
	}
	want := []string{"", "dial tcp 127.0.0.1:" + itoa(down) + ": connect: connection refused",
		"dial tcp 127.0.0.1:" + itoa(hung) + ": i/o timeout", "no port: set port in the health check", ""}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		up6 := acceptAndClose(t, ln).Port
		targets = append(targets, sdk.Target{ID: 6, Address: "::1", Port: uint16(up6)},
			sdk.Target{ID: 7, Address: "::1", Port: uint16(down)})
		want = append(want, "", "dial tcp [::1]:"+itoa(down)+": connect: connection refused")
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			rs := p.run(ctx, targets, 10, targetPort)
			for i, r := range rs {
				status := sdk.StatusFail
				if want[i] == "" {
					status = sdk.StatusPass
				}
				if r.ID != targets[i].ID || r.Status != status || !strings.HasSuffix(r.Message, want[i]) {
					t.Errorf("%s: got %+v, want %v %q", targets[i].Address, r, status, want[i])
				}
			}
		})
	}
	// net.Dialer resolves a host name; the epoll loop hands it the batch.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rs := connectAll(ctx, []sdk.Target{{Address: "localhost", Port: uint16(up.Port)}}, 1, targetPort)
	if rs[0].Status != sdk.StatusPass {
		t.Errorf("localhost: %+v", rs[0])
	}
}

// TestLateTargetsUnknownBatch: with every connect hanging, concurrency
// targets are tried and time out; the rest never get a turn and stay
// unknown.
func TestLateTargetsUnknownBatch(t *testing.T) {
	hung := fullBacklog(t)
	targets := make([]sdk.Target, 10)
	for i := range targets {
		targets[i] = sdk.Target{ID: uint64(i), Address: "127.0.0.1", Port: uint16(hung)}
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			rs := p.run(ctx, targets, 3, targetPort)
			for i, r := range rs {
				want := sdk.StatusUnknown
				if i < 3 {
					want = sdk.StatusFail
				}
				if r.ID != uint64(i) || r.Status != want {
					t.Errorf("target %d: %+v, want %v", i, r, want)
				}
			}
		})
	}
}

// TestCanceled: cancelling the batch's context ends the connects in flight
// at once, not at the deadline.
func TestCanceled(t *testing.T) {
	hung := fullBacklog(t)
	targets := []sdk.Target{{Address: "127.0.0.1", Port: uint16(hung)}, {Address: "127.0.0.1", Port: uint16(hung)}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	rs := connectAll(ctx, targets, 1, targetPort)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancelled batch took %v", d)
	}
	if rs[0].Status != sdk.StatusFail || !strings.Contains(rs[0].Message, "operation was canceled") || rs[1].Status != sdk.StatusUnknown {
		t.Errorf("got %+v, want canceled then unknown", rs)
	}
}

// sockets counts this process's open sockets and descriptors.
func sockets(t testing.TB) (socks, fds int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			socks++
		}
	}
	return socks, len(ents)
}

// TestConcurrencyBound: with every connect hanging, the sockets open
// mid-batch are exactly concurrency.
func TestConcurrencyBound(t *testing.T) {
	hung := fullBacklog(t)
	targets := make([]sdk.Target, 50)
	for i := range targets {
		targets[i] = sdk.Target{Address: "127.0.0.1", Port: uint16(hung)}
	}
	const concurrency = 7
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			before, _ := sockets(t)
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			during := make(chan int, 1)
			time.AfterFunc(200*time.Millisecond, func() { n, _ := sockets(t); during <- n })
			p.run(ctx, targets, concurrency, targetPort)
			if n := <-during - before; n != concurrency {
				t.Errorf("%d sockets in flight, want %d", n, concurrency)
			}
		})
	}
}

// timeWait counts the TIME_WAIT sockets from or to port.
func timeWait(t *testing.T, port int) int {
	t.Helper()
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		hex := fmt.Sprintf(":%04X", port)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ...; st 06 is TIME_WAIT.
			fs := strings.Fields(line)
			if len(fs) > 3 && fs[3] == "06" && (strings.HasSuffix(fs[1], hex) || strings.HasSuffix(fs[2], hex)) {
				n++
			}
		}
	}
	return n
}

// TestNoLeak: 10,000 probes (passing and refused) leave no descriptor open
// and, closed with a RST, no TIME_WAIT behind.
func TestNoLeak(t *testing.T) {
	up := listen(t)
	down := closedPort(t)
	targets := make([]sdk.Target, 1000)
	for i := range targets {
		targets[i] = sdk.Target{Address: "127.0.0.1", Port: uint16(up.Port)}
		if i%10 == 0 {
			targets[i].Port = uint16(down)
		}
	}
	_, before := sockets(t)
	tw := timeWait(t, up.Port)
	for range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rs := connectAll(ctx, targets, 100, targetPort)
		cancel()
		for i, r := range rs {
			if (r.Status == sdk.StatusPass) != (i%10 != 0) {
				t.Fatalf("target %d: %+v", i, r)
			}
		}
	}
	// The listener's accept loop may still hold its last connection for a
	// moment; a leak would not go away.
	_, after := sockets(t)
	for wait := 0; after != before && wait < 100; wait++ {
		time.Sleep(10 * time.Millisecond)
		_, after = sockets(t)
	}
	if after != before {
		t.Errorf("%d descriptors before 10,000 probes, %d after", before, after)
	}
	if n := timeWait(t, up.Port) - tw; n > 10 {
		t.Errorf("%d sockets in TIME_WAIT on port %d after 10,000 probes", n, up.Port)
	}
}

// listenerEnv makes the test binary a loopback listener that accepts and
// closes connections, prints its port and runs until its stdin closes: the
// benchmark's backend, in its own process so that its allocations and CPU
// are not counted as the checker's.
const listenerEnv = "TCPCHECK_TEST_LISTENER"

func TestMain(m *testing.M) {
	if os.Getenv(listenerEnv) == "1" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// listenerProcess starts the test binary as a listener (see listenerEnv)
// and returns its port.
func listenerProcess(b *testing.B) int {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), listenerEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	var port int
	if _, err := fmt.Fscan(stdout, &port); err != nil {
		b.Fatal("listener process:", err)
	}
	return port
}

// BenchmarkCheck1000 checks 1,000 targets on a loopback listener through
// each path; cpu-ns/op is this process's user and system time per batch
// (wall time hides the dialer's parallelism), which on loopback includes
// the kernel's TCP work for the listener's end too.
func BenchmarkCheck1000(b *testing.B) {
	port := uint16(listenerProcess(b))
	targets := make([]sdk.Target, 1000)
	for i := range targets {
		targets[i] = sdk.Target{Address: "127.0.0.1", Port: port}
	}
	for _, p := range paths {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				for _, r := range p.run(ctx, targets, probe.DefaultConcurrency, targetPort) {
					if r.Status != sdk.StatusPass {
						b.Fatal(r)
					}
				}
				cancel()
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
