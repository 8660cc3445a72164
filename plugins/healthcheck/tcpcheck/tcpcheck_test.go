package tcpcheck

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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
		_, err := ParseConfig([]byte(tc.config))
		var got []string
		if err != nil {
			errs := []error{err}
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			}
			for _, e := range errs {
				var ce *sdk.ConfigError
				if !errors.As(e, &ce) {
					t.Errorf("%s: %v is not a ConfigError", tc.config, e)
					continue
				}
				got = append(got, ce.Attribute)
			}
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

func BenchmarkCheck1000(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	targets := make([]sdk.Target, 1000)
	for i := range targets {
		targets[i] = sdk.Target{Address: "127.0.0.1", Port: port}
	}
	c := New()
	b.ReportAllocs()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, r := range c.Check(ctx, targets) {
			if r.Status != sdk.StatusPass {
				b.Fatal(r)
			}
		}
		cancel()
	}
}
