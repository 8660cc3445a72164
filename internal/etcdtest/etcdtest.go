// Package etcdtest runs a real etcd server for a test: one member on
// 127.0.0.1 with its own ports and data directory, stopped and killed when
// the test ends, whether it passes or fails. The binary is the etcd on PATH
// (Debian's etcd-server, which `make tools` installs); without it the test
// skips, or fails under XLB_E2E=1.
//
// Kill and Restart let a test take etcd away (SIGKILL, as a crash) and bring
// it back on the same ports and data directory, so that clients reconnect to
// the same endpoints and the revision history survives: a watch resumed from
// a revision taken before the outage sees every change after it.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
)

// readyTimeout bounds how long a start waits for etcd to serve. A single
// member elects itself at once; the slack is for a loaded machine.
const readyTimeout = 30 * time.Second

// Server is one etcd member owned by a test.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	client  string // http://127.0.0.1:port
	peer    string
	log     testenv.Buffer // etcd's output, shown when the test fails
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has been waited for
	stopped bool

	tlsOn    bool
	tls      TLSFiles
	tlsFlags []string
	hc       *http.Client // for /health

	// Set by InNamespace: how etcd is started, and the client address.
	command func(name string, args ...string) *exec.Cmd
	host    string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
}

// InNamespace runs etcd in another network namespace: command starts a
// program there (the lab's `ip netns exec NS`, which execs it in place, so
// that it stays this process's child), etcd serves clients on host (an
// address of that namespace) at the standard port 2379 (its peers at
// 2380, the namespace's loopback may be down), and dial reaches
// that namespace, for the readiness check here and for the test's own
// clients. The namespace is the test's own, so its ports are free.
func InNamespace(command func(name string, args ...string) *exec.Cmd, host string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(s *Server) {
		s.command, s.host, s.dial = command, host, dial
		s.hc.Transport = &http.Transport{DialContext: dial}
	}
}

// Start runs etcd and returns once it serves clients. The test's cleanup
// stops it (SIGTERM, then SIGKILL) and, if the test failed, logs etcd's
// output.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, bin: testenv.RequireTool(t, "etcd"), hc: &http.Client{Timeout: time.Second}}
	for _, o := range opts {
		o(s)
	}
	scheme := "http"
	if s.tlsOn {
		var cfg *tls.Config
		s.tls, s.tlsFlags, cfg = makeTLS(t, t.TempDir())
		s.hc.Transport = &http.Transport{TLSClientConfig: cfg}
		scheme = "https"
	}
	t.Cleanup(s.cleanup)
	if s.command != nil {
		s.dir = t.TempDir()
		s.client = scheme + "://" + net.JoinHostPort(s.host, "2379")
		s.peer = "http://" + net.JoinHostPort(s.host, "2380")
		if err := s.start(); err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
		return s
	}
	// A port found free can be taken before etcd binds it; such a start
	// fails at once and is retried on other ports, in a new data directory
	// so that no trace of the failed member's URLs is left.
	var err error
	for range 5 {
		s.dir = t.TempDir()
		c, p := freePort(t), freePort(t)
		s.client = scheme + "://127.0.0.1:" + strconv.Itoa(c)
		s.peer = "http://127.0.0.1:" + strconv.Itoa(p)
		if err = s.start(); err == nil {
			return s
		}
		if !strings.Contains(s.log.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("etcdtest: %v", err)
	return nil
}

// Endpoints returns the client URLs, for clientv3.Config.Endpoints. They
// stay the same across Kill and Restart.
func (s *Server) Endpoints() []string { return []string{s.client} }

// DataDir returns the member's data directory.
func (s *Server) DataDir() string { return s.dir }

// Kill sends etcd SIGKILL and waits until it has exited: a crash, with no
// chance to close connections or flush anything beyond what it committed.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatal("etcdtest: Kill of an etcd that is not running")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts etcd again on the same ports and data directory, after
// Kill, and returns once it serves.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errors.New("start after the test's cleanup")
	}
	if s.done != nil {
		select {
		case <-s.done:
		default:
			s.mu.Unlock()
			return errors.New("start of an etcd that is running")
		}
	}
	start := exec.Command
	if s.command != nil {
		start = s.command
	}
	cmd := start(s.bin, append([]string{
		"--name", "etcdtest",
		"--data-dir", s.dir,
		"--listen-client-urls", s.client,
		"--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer,
		"--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "etcdtest=" + s.peer,
		"--initial-cluster-state", "new",
		// A lone member on loopback has no peer to lose: a short election
		// timeout only shortens the wait for its leadership after a
		// Restart (a second with the defaults).
		"--heartbeat-interval", "10",
		"--election-timeout", "100",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}, s.tlsFlags...)...)
	cmd.Stdout = &s.log
	cmd.Stderr = &s.log
	// Killed with this process even when the test binary dies before its
	// cleanup (a -timeout panic). The signal fires when the thread that
	// started etcd exits, so that thread is locked to the goroutine that
	// waits for etcd (as plugins/host does for plugins).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		s.mu.Unlock()
		return err
	}
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return s.waitReady(done)
}

// waitReady polls etcd's /health until it reports healthy: it answers only
// once the member has a leader and can serve a read.
func (s *Server) waitReady(done <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			return fmt.Errorf("etcd exited before serving: %s", lastLine(s.log.String()))
		default:
		}
		if resp, err := s.hc.Get(s.client + "/health"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd did not serve within %v", readyTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup stops etcd: SIGTERM, SIGKILL after a few seconds, and waits for
// it, so that no etcd outlives its test or writes into a removed TempDir.
func (s *Server) cleanup() {
	s.mu.Lock()
	s.stopped = true
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
	}
	if s.t.Failed() {
		s.t.Logf("etcd output:\n%s", s.log.String())
	}
}

// freePort returns a TCP port free on 127.0.0.1, chosen below the kernel's
// ephemeral range (32768 and up by default) so that outgoing connections,
// which take their source ports from that range, cannot be holding it when
// Restart binds it again.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("etcdtest: no free port in 20000-31999 on 127.0.0.1")
	return 0
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
