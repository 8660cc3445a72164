package host

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/internal/fakeplugin"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// The test binary doubles as a health-checker plugin (fakeplugin) and as
// a stand-in xlbd that launches one and prints its PID (hostEnv).
const (
	pluginEnv = fakeplugin.Env
	hostEnv   = "XLB_HOST_TEST_HOST"
)

func TestMain(m *testing.M) {
	fakeplugin.ServeIfChild()
	if os.Getenv(hostEnv) != "" {
		runHost()
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// runHost launches the plugin, prints its PID and waits to be killed.
// With hostEnv set to "announcer PATH RECORD", it launches the route
// announcer at PATH recording into RECORD instead.
func runHost() {
	os.Setenv(pluginEnv, "1")
	exe, _ := os.Executable()
	spec := Spec{Name: "hc", Path: exe, Kind: sdk.KindHealthChecker}
	if f := strings.Fields(os.Getenv(hostEnv)); len(f) == 3 && f[0] == "announcer" {
		spec = Spec{Name: "bgp", Path: f[1], Kind: sdk.KindRouteAnnouncer, Config: []byte(fmt.Sprintf(`{"record":%q}`, f[2]))}
	}
	p, err := New(spec, Options{})
	if err == nil {
		err = p.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Printf("pid %d\n", p.Status().PID)
	select {}
}

// logBuffer collects the JSON log lines of the host's slog logger.
type logBuffer struct{ testenv.Buffer }

// count returns how many log lines contain every one of subs.
func (l *logBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, sub := range subs {
			ok = ok && strings.Contains(line, sub)
		}
		if ok {
			n++
		}
	}
	return n
}

func exe(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func digest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newPlugin(t *testing.T, sum string, opt Options) (*Plugin, *logBuffer) {
	t.Helper()
	t.Setenv(pluginEnv, "1")
	logs := &logBuffer{}
	opt.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := New(Spec{Name: "hc", Path: exe(t), SHA256: sum, Kind: sdk.KindHealthChecker,
		Config: []byte(`{"answer":42}`)}, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p, logs
}

func targets(names ...string) []health.Target {
	ts := make([]health.Target, len(names))
	for i, n := range names {
		ts[i] = health.Target{Backend: n, Addr: netip.MustParseAddrPort("192.0.2.1:80"), Timeout: time.Second}
	}
	return ts
}

func probe(p *Plugin, names ...string) ([]health.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Prober().Probe(ctx, targets(names...))
}

func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// A zombie has exited; whether it is reaped is its new parent's business.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not within %v: %s", d, what)
		}
	}
}

func TestNewRefusesBadSpec(t *testing.T) {
	for _, s := range []Spec{
		{Path: "/x", Kind: sdk.KindHealthChecker},
		{Name: "a", Kind: sdk.KindHealthChecker},
		{Name: "a", Path: "/x", Kind: "nope"},
		{Name: "a", Path: "/x", Kind: sdk.KindHealthChecker, SHA256: "abc"},
		{Name: "a", Path: "redis-check", Kind: sdk.KindHealthChecker},
		{Name: "a", Path: "./redis-check", Kind: sdk.KindHealthChecker},
	} {
		if _, err := New(s, Options{}); err == nil {
			t.Errorf("New(%+v) accepted", s)
		}
	}
}

// TestFailedStartIsFailed: when Start returns an error, Status already
// says failed (it said starting for a moment, under load).
func TestFailedStartIsFailed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for range 50 {
		p, err := New(Spec{Name: "m", Path: missing, Kind: sdk.KindHealthChecker}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err == nil {
			t.Fatal("a missing binary started")
		}
		if st := p.Status(); st.State != StateFailed || st.LastError == "" {
			t.Fatalf("status after a failed Start = %+v", st)
		}
		p.Stop()
	}
}

func TestChecksumMismatchRefused(t *testing.T) {
	want := strings.Repeat("0", 64)
	p, _ := newPlugin(t, want, Options{})
	err := p.Start()
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("Start = %v, want a checksum error", err)
	}
	actual := digest(t, exe(t))
	for _, s := range []string{exe(t), want, actual, "checksum mismatch"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if st := p.Status(); st.State != StateFailed || st.PID != 0 || st.LastError != err.Error() {
		t.Errorf("status after refusal = %+v", st)
	}
	if _, err := probe(p, "a"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Probe of a refused plugin = %v, want ErrNotRunning", err)
	}
}

func TestChecksumAcceptedAndLogsForwarded(t *testing.T) {
	p, logs := newPlugin(t, digest(t, exe(t)), Options{})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if st.State != StateRunning || st.PID == 0 || st.Info.Kind != sdk.KindHealthChecker || st.Info.Version != "9.9.9" {
		t.Fatalf("status = %+v", st)
	}
	rs, err := probe(p, "a", "down")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Backend != "a" || !rs[0].OK || rs[1].Backend != "down" || rs[1].OK || rs[1].Err != "refused" {
		t.Errorf("results = %+v", rs)
	}
	// hclog JSON on the plugin's stderr keeps its message, level and
	// fields; a plain line written after Serve arrives over gRPC stdio.
	waitFor(t, 2*time.Second, "plugin logs forwarded", func() bool {
		return logs.count(`"plugin":"hc"`, `"msg":"fake plugin serving"`, `"level":"INFO"`) == 1 &&
			logs.count(`"plugin":"hc"`, `"msg":"configured"`, `"config":"{\"answer\":42}"`) == 1 &&
			logs.count(`"plugin":"hc"`, `"msg":"plain stderr line"`, `"stream":"stderr"`) == 1
	})
	pid := st.PID
	p.Stop()
	if st := p.Status(); st.State != StateStopped || st.PID != 0 {
		t.Errorf("status after Stop = %+v", st)
	}
	waitFor(t, 2*time.Second, "plugin process gone after Stop", func() bool { return gone(pid) })
}

func TestUnknownResults(t *testing.T) {
	p, _ := newPlugin(t, "", Options{})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	rs, err := probe(p, "a", "unknown")
	if err != nil || len(rs) != 2 || !rs[0].OK || rs[0].Unknown || !rs[1].Unknown || rs[1].Err != "cannot tell" {
		t.Errorf("mixed batch = %+v, %v", rs, err)
	}
}

// TestParams: a health check's parameters reach the plugin with its batch,
// and ValidateParams refuses bad ones attribute by attribute.
func TestParams(t *testing.T) {
	p, _ := newPlugin(t, "", Options{})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	ts := targets("a", "b")
	for i := range ts {
		ts[i].Params = []byte(`{"down":"b"}`)
	}
	rs, err := p.Prober().Probe(context.Background(), ts)
	if err != nil || !rs[0].OK || rs[1].OK || rs[1].Err != "down by parameter" {
		t.Fatalf("probe with params = %+v, %v", rs, err)
	}
	hc, err := p.HealthChecker()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := hc.ValidateParams(ctx, []byte(`{"down":"b"}`)); err != nil {
		t.Errorf("valid params refused: %v", err)
	}
	var ce *sdk.ConfigError
	if err := hc.ValidateParams(ctx, []byte(`{"down":"a"}`)); !errors.As(err, &ce) || ce.Attribute != "down" {
		t.Errorf("ValidateParams(down=a) = %v, want a ConfigError on down", err)
	}
	if err := hc.ValidateParams(ctx, []byte(`{"colour":"red"}`)); !errors.As(err, &ce) || !strings.Contains(ce.Message, "colour") {
		t.Errorf("ValidateParams(colour) = %v, want an unknown-field error", err)
	}
	// Parameters refused at Check time (a plugin upgraded under a running
	// configuration) are no verdict for the batch: an error, so health holds.
	for i := range ts {
		ts[i].Params = []byte(`{"down":"a"}`)
	}
	if rs, err := p.Prober().Probe(ctx, ts); err == nil {
		t.Errorf("probe with refused params = %+v, want an error", rs)
	}
}

// countingSink counts SetHealth calls and what they said.
type countingSink struct {
	mu    sync.Mutex
	calls []map[string]bool
}

func (s *countingSink) SetHealth(m map[string]bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, m)
	return nil
}

// TestCrashesDoNotFlap: the scheduler checks an up and a down backend
// through the plugin with rise = fall = 1, the most sensitive settings,
// while the plugin is SIGKILLed three times. Every batch during a restart
// fails as a whole and is held: after the first verdict (b down), no
// health change is published at all.
func TestCrashesDoNotFlap(t *testing.T) {
	p, _ := newPlugin(t, "", Options{MinBackoff: 200 * time.Millisecond})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	sink := &countingSink{}
	s := health.New(health.Options{Probers: map[string]health.Prober{"fake": p.Prober()}, Sink: sink, Slots: 1, Coalesce: 10 * time.Millisecond})
	cfg := &control.Config{
		VIPs: []control.VIP{{Name: "v", Address: netip.MustParseAddr("192.0.2.1"), Protocol: "tcp", Pool: "p", TableSize: 251}},
		Pools: []control.Pool{{Name: "p",
			Backends: []control.Backend{{Name: "a", Address: netip.MustParseAddr("10.0.0.1"), Weight: 1},
				{Name: "down", Address: netip.MustParseAddr("10.0.0.2"), Weight: 1}},
			HealthChecks: []control.HealthCheck{{Method: "fake", Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 1, Fall: 1}}}},
	}
	if err := s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Stop()
	calls := func() []map[string]bool {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		return slices.Clone(sink.calls)
	}
	waitFor(t, 2*time.Second, "down marked down", func() bool { return len(calls()) == 1 })
	for range 3 {
		old := p.Status().PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "exit detected", func() bool { return p.Status().PID != old })
		waitFor(t, 10*time.Second, "restarted", func() bool { return p.Status().State == StateRunning })
		time.Sleep(150 * time.Millisecond) // a few probes by the new instance
	}
	if c := calls(); len(c) != 1 || fmt.Sprint(c[0]) != "map[down:false]" {
		t.Fatalf("SetHealth calls %v, want only [map[down:false]]", c)
	}
	st := s.Stats()
	if st.Checks[0].ProberErrors == 0 {
		t.Errorf("no prober errors recorded across three crashes: %+v", st.Checks[0])
	}
	for _, b := range st.Backends {
		if b.Transitions != map[string]uint64{"a": 0, "down": 1}[b.Name] {
			t.Errorf("backend %s: %d transitions", b.Name, b.Transitions)
		}
	}
	t.Logf("%d batches, %d failed as a whole during 3 restarts", st.Checks[0].Calls, st.Checks[0].ProberErrors)
}

// TestKillRestart: SIGKILL the plugin; the host notices within 2 s, the
// Prober errs (the scheduler holds) until the restart, the restarted
// instance is configured again and serves.
func TestKillRestart(t *testing.T) {
	p, logs := newPlugin(t, "", Options{MinBackoff: 500 * time.Millisecond})
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(p, "a"); err != nil {
		t.Fatal(err)
	}
	old := p.Status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitFor(t, 2*time.Second, "exit detected", func() bool { return p.Status().State != StateRunning })
	t.Logf("exit detected in %v", time.Since(killed))
	st := p.Status()
	if st.State != StateRestarting || !strings.Contains(st.LastError, "exited") {
		t.Fatalf("status after kill = %+v", st)
	}
	// Within the 500 ms backoff: every probe errs, so health is held.
	if rs, err := probe(p, "a", "down"); !errors.Is(err, ErrNotRunning) || rs != nil {
		t.Fatalf("Probe while restarting = %+v, %v; want ErrNotRunning", rs, err)
	}
	waitFor(t, 10*time.Second, "restarted", func() bool { return p.Status().State == StateRunning })
	st = p.Status()
	if st.Restarts != 1 || st.PID == 0 || st.PID == old {
		t.Errorf("status after restart = %+v (old pid %d)", st, old)
	}
	if rs, err := probe(p, "a"); err != nil || !rs[0].OK {
		t.Errorf("Probe after restart = %+v, %v", rs, err)
	}
	waitFor(t, 2*time.Second, "Configure re-sent", func() bool {
		return logs.count(`"msg":"configured"`, `"config":"{\"answer\":42}"`) == 2
	})
	// The restart is in the log, with the plugin's name and its count.
	if logs.count(`"level":"WARN"`, `"msg":"plugin exited; restarting"`, `"plugin":"hc"`) != 1 ||
		logs.count(`"level":"INFO"`, `"msg":"plugin running"`, `"plugin":"hc"`, fmt.Sprintf(`"pid":%d`, st.PID), `"restarts":1`) != 1 {
		t.Errorf("the restart is not logged as plugin=hc, restarts=1:\n%s", logs.String())
	}
	if !gone(old) {
		t.Errorf("killed plugin %d still present", old)
	}
}

// killedHost runs this binary as a host (hostEnv=env), which starts a
// plugin and prints its PID, then SIGKILLs the host and returns the
// plugin's PID.
func killedHost(t *testing.T, env string) int {
	t.Helper()
	cmd := exec.Command(exe(t))
	cmd.Env = append(os.Environ(), hostEnv+"="+env)
	var stderr testenv.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	if _, serr := fmt.Sscanf(line, "pid %d", &pid); err != nil || serr != nil || pid == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("host said %q (%v); stderr: %s", line, err, stderr.String())
	}
	if gone(pid) {
		t.Fatalf("plugin %d not running before the host is killed", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	return pid
}

// TestHostSIGKILLLeavesNoPlugin runs this binary as a host, SIGKILLs it
// and checks that its plugin dies with it.
func TestHostSIGKILLLeavesNoPlugin(t *testing.T) {
	pid := killedHost(t, "1")
	waitFor(t, 2*time.Second, fmt.Sprintf("plugin %d gone after its host's SIGKILL", pid), func() bool { return gone(pid) })
}
