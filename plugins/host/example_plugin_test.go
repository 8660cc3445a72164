package host_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// TestExamplePlugin builds examples/healthcheck-plugin (a Redis PING
// checker in its own module, as a third party would write it), loads it by
// path and SHA-256, and watches a Redis-speaking backend go down and up.
func TestExamplePlugin(t *testing.T) {
	bin := buildExample(t)
	t.Run("down and up", func(t *testing.T) { exampleDownUp(t, bin) })
	t.Run("wrong checksum", func(t *testing.T) { exampleWrongChecksum(t, bin) })
}

// exampleDownUp loads bin by path and checksum and probes one backend, with
// a password as its health check's parameter, while its server stops and
// starts again.
func exampleDownUp(t *testing.T, bin string) {
	sum := fileSHA256(t, bin)

	const password = "s3cret"
	srv := startRESP(t, "127.0.0.1:0", password)
	addr := srv.addr()

	p, err := host.New(host.Spec{
		Name: "redis", Path: bin, SHA256: sum, Kind: sdk.KindHealthChecker,
		Config: []byte(`{"concurrency":4}`),
	}, host.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer p.Stop()
	info := p.Status().Info
	if info.Kind != sdk.KindHealthChecker || info.Version != "0.1.0" ||
		!slices.ContainsFunc(info.Params, func(a sdk.Attribute) bool { return a.Name == "password" }) {
		t.Errorf("Info = %+v; want a healthchecker, version 0.1.0, with a password parameter", info)
	}
	params := []byte(`{"password":"` + password + `"}`)

	prober := p.Prober()
	probe := func(step string) health.Result {
		t.Helper()
		rs, err := prober.Probe(context.Background(), []health.Target{{Backend: "cache-1", Addr: addr, Timeout: time.Second, Params: params}})
		if err != nil {
			t.Fatalf("%s: Probe: %v", step, err)
		}
		if len(rs) != 1 || rs[0].Backend != "cache-1" {
			t.Fatalf("%s: Probe = %+v; want one result for cache-1", step, rs)
		}
		return rs[0]
	}

	if r := probe("up"); !r.OK {
		t.Fatalf("up: %+v; want pass", r)
	}
	if got := srv.pings(); got != 1 {
		t.Errorf("up: the server saw %d authenticated PINGs; want 1", got)
	}

	srv.stop()
	if r := probe("down"); r.OK || !strings.Contains(r.Err, "connection refused") {
		t.Fatalf("down: %+v; want a failure with connection refused", r)
	}

	srv = startRESP(t, addr.String(), password)
	if r := probe("up again"); !r.OK {
		t.Fatalf("up again: %+v; want pass", r)
	}

	// A server that wants another password: the check quotes its error;
	// another pool's health check, with that password, passes it.
	other := startRESP(t, "127.0.0.1:0", "other")
	rs, err := prober.Probe(context.Background(), []health.Target{
		{Backend: "cache-1", Addr: addr, Timeout: time.Second, Params: params},
		{Backend: "cache-2", Addr: other.addr(), Timeout: time.Second, Params: params},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rs[0].OK || rs[1].OK || !strings.Contains(rs[1].Err, "WRONGPASS") {
		t.Errorf("batch = %+v; want cache-1 pass, cache-2 fail with WRONGPASS", rs)
	}
	rs, err = prober.Probe(context.Background(), []health.Target{
		{Backend: "cache-2", Addr: other.addr(), Timeout: time.Second, Params: []byte(`{"password":"other"}`)},
	})
	if err != nil || !rs[0].OK {
		t.Errorf("cache-2 with its own pool's password = %+v, %v; want pass", rs, err)
	}
}

// exampleWrongChecksum declares bin with a digest that is not its own:
// Start must refuse it before running it.
func exampleWrongChecksum(t *testing.T, bin string) {
	b, err := hex.DecodeString(fileSHA256(t, bin))
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	wrong := hex.EncodeToString(b)
	p, err := host.New(host.Spec{Name: "redis", Path: bin, SHA256: wrong, Kind: sdk.KindHealthChecker},
		host.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	err = p.Start()
	var ce *host.ChecksumError
	if !errors.As(err, &ce) || ce.Expected != wrong || ce.Path != bin {
		t.Fatalf("Start = %v; want a *host.ChecksumError for %s expecting %s", err, bin, wrong)
	}
	if st := p.Status(); st.State != host.StateFailed || st.PID != 0 {
		t.Errorf("Status = %+v; want failed with no process", st)
	}
}

// buildExample builds examples/healthcheck-plugin in its own directory and
// module, as its README says, and returns the executable. It never uses the
// network: the example needs no module the main module does not already
// use, so a build that wants to download one is a bug in its go.mod/go.sum.
func buildExample(t *testing.T) string {
	t.Helper()
	gobin := testenv.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "redis-check")
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Dir = "../../examples/healthcheck-plugin"
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building examples/healthcheck-plugin offline (GOPROXY=off): %v\n%s\n"+
			"its go.mod/go.sum must need only modules the main module already uses", err, out)
	}
	return bin
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// respServer is a minimal Redis stand-in: it speaks RESP arrays of bulk
// strings and answers AUTH and PING the way Redis 6+ does when
// requirepass is set.
type respServer struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
	n     int // authenticated PINGs answered
	pass  string
}

func startRESP(t *testing.T, addr, password string) *respServer {
	t.Helper()
	var ln net.Listener
	var err error
	// Re-binding a port just released can race with the kernel; retry briefly.
	for range 20 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &respServer{ln: ln, conns: map[net.Conn]bool{}, pass: password}
	s.wg.Go(s.accept)
	t.Cleanup(s.stop)
	return s
}

func (s *respServer) addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

func (s *respServer) pings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// stop closes the listener and every connection and waits for them;
// idempotent.
func (s *respServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *respServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		})
	}
}

func (s *respServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	authed := s.pass == ""
	for {
		args, err := readCommand(r)
		if err != nil {
			return
		}
		var reply string
		switch {
		case len(args) == 0:
			reply = "-ERR empty command\r\n"
		case strings.EqualFold(args[0], "AUTH") && len(args) == 2:
			if args[1] == s.pass {
				authed, reply = true, "+OK\r\n"
			} else {
				reply = "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
			}
		case !authed:
			reply = "-NOAUTH Authentication required.\r\n"
		case strings.EqualFold(args[0], "PING"):
			s.mu.Lock()
			s.n++
			s.mu.Unlock()
			reply = "+PONG\r\n"
		default:
			reply = "-ERR unknown command\r\n"
		}
		if _, err := io.WriteString(c, reply); err != nil {
			return
		}
	}
}

// readCommand reads one RESP array of bulk strings: *<n>\r\n then
// $<len>\r\n<bytes>\r\n n times.
func readCommand(r *bufio.Reader) ([]string, error) {
	n, err := readHeader(r, '*')
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, n)
	for range n {
		l, err := readHeader(r, '$')
		if err != nil {
			return nil, err
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		args = append(args, string(b[:l]))
	}
	return args, nil
}

func readHeader(r *bufio.Reader, prefix byte) (int, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 3 || line[0] != prefix {
		return 0, errors.New("bad RESP header " + strconv.Quote(line))
	}
	n, err := strconv.Atoi(strings.TrimSuffix(line[1:], "\r\n"))
	if err != nil || n < 0 || n > 1<<20 {
		return 0, errors.New("bad RESP length " + strconv.Quote(line))
	}
	return n, nil
}
