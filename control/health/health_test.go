package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// recorder is a Sink that records every SetHealth call and forwards it to
// ctrl when set.
type recorder struct {
	mu    sync.Mutex
	calls []map[string]bool
	at    []time.Time
	now   func() time.Time
	ctrl  *control.Controller
}

func (r *recorder) SetHealth(m map[string]bool) error {
	r.mu.Lock()
	r.calls = append(r.calls, maps.Clone(m))
	r.at = append(r.at, r.now())
	r.mu.Unlock()
	if r.ctrl != nil {
		return r.ctrl.SetHealth(m)
	}
	return nil
}

// script is a scripted prober: ok(backend, n) is the result of the n-th
// probe (from 0) of backend, unless unknown(backend, n) makes it no
// verdict; err(n) fails the n-th call as a whole.
type script struct {
	ok      func(backend string, n int) bool
	unknown func(backend string, n int) bool
	err     func(call int) error
	latency func(backend string, n int) time.Duration // 1ms when nil
	now     func() time.Time
	n       map[string]int
	calls   []probeCall
}

type probeCall struct {
	at      time.Time
	targets []Target
}

func (p *script) Probe(_ context.Context, ts []Target) ([]Result, error) {
	call := len(p.calls)
	p.calls = append(p.calls, probeCall{p.now(), ts})
	if p.err != nil {
		if err := p.err(call); err != nil {
			return nil, err
		}
	}
	var out []Result
	for _, t := range ts {
		n := p.n[t.Backend]
		p.n[t.Backend]++
		ok := p.ok(t.Backend, n)
		r := Result{Backend: t.Backend, OK: ok, Latency: time.Millisecond}
		if p.latency != nil {
			r.Latency = p.latency(t.Backend, n)
		}
		switch {
		case p.unknown != nil && p.unknown(t.Backend, n):
			r = Result{Backend: t.Backend, Unknown: true, Err: "not probed"}
		case !ok:
			r.Err = "connection refused"
		}
		out = append(out, r)
	}
	return out, nil
}

// harness drives a Scheduler on a fake clock, running probes inline.
type harness struct {
	t    *testing.T
	now  time.Time
	s    *Scheduler
	sink *recorder
}

func newHarness(t *testing.T, opt Options, probers map[string]*script) *harness {
	h := &harness{t: t, now: epoch}
	clock := func() time.Time { return h.now }
	h.sink = &recorder{now: clock}
	opt.Now, opt.Sink, opt.Probers = clock, h.sink, map[string]Prober{}
	for m, p := range probers {
		p.now, p.n = clock, map[string]int{}
		opt.Probers[m] = p
	}
	h.s = New(opt)
	return h
}

// advance runs everything due up to now+d, in time order.
func (h *harness) advance(d time.Duration) {
	end := h.now.Add(d)
	for {
		calls, changes, next := h.s.step(h.now)
		for _, c := range calls {
			h.s.exec(c)
		}
		if changes != nil {
			h.s.publish(changes)
		}
		if len(calls) > 0 || changes != nil {
			continue
		}
		if next.After(end) {
			h.now = end
			return
		}
		h.now = next
	}
}

func (h *harness) configure(cfg *control.Config) {
	h.t.Helper()
	if err := h.s.Configure(cfg); err != nil {
		h.t.Fatalf("Configure: %v", err)
	}
}

func (h *harness) backend(name string) BackendStats {
	h.t.Helper()
	for _, b := range h.s.Stats().Backends {
		if b.Name == name {
			return b
		}
	}
	h.t.Fatalf("no backend %q in Stats", name)
	return BackendStats{}
}

// webConfig is VIP web (table size 251, or 65537 for more backends than
// that) on pool web with the given backends (weight 1, 10.0.0.i+1) and
// health checks.
func webConfig(checks []control.HealthCheck, backends ...string) *control.Config {
	p := control.Pool{Name: "web", HealthChecks: checks}
	for i, name := range backends {
		p.Backends = append(p.Backends, control.Backend{Name: name,
			Address: netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)}), Weight: 1})
	}
	size := uint32(251)
	if len(backends) >= 251 {
		size = 65537
	}
	return &control.Config{Pools: []control.Pool{p}, VIPs: []control.VIP{{Name: "web",
		Address: netip.MustParseAddr("192.0.2.1"), Protocol: "tcp", Ports: []uint16{80}, Pool: "web", TableSize: size}}}
}

func hc(method string, rise, fall int) control.HealthCheck {
	return control.HealthCheck{Method: method, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: rise, Fall: fall, Port: 8080, Params: map[string]json.RawMessage{"path": json.RawMessage(`"/"`)}}
}

var noDamp = Dampening{Disabled: true, HalfLife: time.Second}

// TestRiseFall: down on exactly the fall-th consecutive failure, up on
// exactly the rise-th consecutive pass; an isolated failure resets nothing.
func TestRiseFall(t *testing.T) {
	// a: pass, fail, pass (reset), fail×3 (down at probe 5), pass×2 (up at 7).
	seq := []bool{true, false, true, false, false, false, true, true, true}
	p := &script{ok: func(b string, n int) bool { return b != "a" || seq[min(n, len(seq)-1)] }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 2, 3)}, "a", "b"))
	h.advance(time.Second) // every slot fires within its first interval
	if len(p.calls) != 1 {
		t.Fatalf("%d calls in the first interval, want 1", len(p.calls))
	}
	want := []bool{true, true, true, true, true, false, false, true, true}
	for i, w := range want {
		if got := h.backend("a"); got.Raw != w {
			t.Fatalf("after probe %d: raw %v, want %v (%+v)", i, got.Raw, w, got)
		}
		h.advance(time.Second)
	}
	if b := h.backend("a"); b.Transitions != 2 || !b.Healthy {
		t.Fatalf("a: %+v, want 2 transitions and healthy", b)
	}
	if len(h.sink.calls) != 2 || h.sink.calls[0]["a"] || !h.sink.calls[1]["a"] || len(h.sink.calls[0]) != 1 {
		t.Fatalf("SetHealth calls %v, want [{a:false} {a:true}]", h.sink.calls)
	}
	if b := h.backend("b"); !b.Healthy || b.Transitions != 0 || b.Methods[0].Probes != 10 {
		t.Fatalf("b: %+v, want healthy after 10 probes", b)
	}
	got := p.calls[0].targets[0]
	if got.Addr != netip.MustParseAddrPort("10.0.0.1:8080") || got.Timeout != 500*time.Millisecond || string(got.Params) != `{"path":"/"}` {
		t.Fatalf("target %+v", got)
	}
}

// TestUnknownHolds: a result without a verdict neither passes nor fails:
// consecutive counts carry across it, and it is counted.
func TestUnknownHolds(t *testing.T) {
	// a fails probes 0, 1, then 5 unknowns, then fails: down at probe 7,
	// the third failure; b passes except for unknowns and never moves.
	p := &script{
		ok:      func(b string, n int) bool { return b != "a" },
		unknown: func(_ string, n int) bool { return n >= 2 && n < 7 },
	}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 2, 3)}, "a", "b"))
	h.advance(7 * time.Second) // probes 0..6
	if a := h.backend("a"); !a.Raw || a.Methods[0].Fail != 2 {
		t.Fatalf("after 2 failures and 5 unknowns: %+v, want up with 2 consecutive failures", a)
	}
	h.advance(time.Second)
	if a := h.backend("a"); a.Raw || a.Transitions != 1 {
		t.Fatalf("after the third failure: %+v, want down", a)
	}
	if b := h.backend("b"); !b.Healthy || b.Transitions != 0 {
		t.Fatalf("b: %+v", b)
	}
	if st := h.s.Stats().Checks[0]; st.Unknowns != 10 || st.Probes != 16 {
		t.Fatalf("check stats %+v, want 10 unknowns of 16 probes", st)
	}
}

// TestLatencies: every probe with a verdict, passed or failed, is counted
// in its check's latency histogram where its result arrives, in the bucket
// of the smallest bound at least its latency; those without one are not.
func TestLatencies(t *testing.T) {
	lat := []time.Duration{time.Millisecond, 3 * time.Millisecond, 20 * time.Second, 0, 5 * time.Millisecond}
	p := &script{
		ok:      func(_ string, n int) bool { return n != 1 },
		unknown: func(_ string, n int) bool { return n == 3 },
		latency: func(_ string, n int) time.Duration { return lat[n] },
	}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 2, 3)}, "a"))
	h.advance(5 * time.Second) // probes 0..4
	got := h.backend("a").Methods[0].Latencies
	var want Latencies
	want.Counts[0] = 1                   // 1ms: at most the first bound
	want.Counts[2] = 2                   // 3ms (failed) and 5ms: above 2.5ms, at most 5ms
	want.Counts[len(LatencyBuckets)] = 1 // 20s: above every bound
	want.Sum = 20*time.Second + 9*time.Millisecond
	if got != want {
		t.Fatalf("latencies %+v, want %+v", got, want)
	}
}

// TestAllMethods: a backend is healthy only while every method passes.
func TestAllMethods(t *testing.T) {
	httpOK := true
	tcp := &script{ok: func(string, int) bool { return true }}
	http := &script{ok: func(b string, _ int) bool { return b != "a" || httpOK }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": tcp, "http": http})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1), hc("http", 1, 1)}, "a", "b"))
	h.advance(time.Second)
	httpOK = false
	h.advance(time.Second)
	a := h.backend("a")
	if a.Healthy || !a.Methods[1].Up || a.Methods[0].Up || a.Methods[0].Last.Err == "" {
		t.Fatalf("a with http failing: %+v, want unhealthy, tcp up, http down", a)
	}
	if !h.backend("b").Healthy {
		t.Fatal("b must stay healthy")
	}
	httpOK = true
	h.advance(time.Second)
	if !h.backend("a").Healthy {
		t.Fatal("a must be healthy again once both methods pass")
	}
}

// TestProberErrorHolds: a prober failing whole batches (plugin restarting)
// holds every target's last state, and is counted.
func TestProberErrorHolds(t *testing.T) {
	broken := false
	p := &script{ok: func(b string, _ int) bool { return b != "a" || broken },
		err: func(int) error {
			if broken {
				return errors.New("plugin exited")
			}
			return nil
		}}
	h := newHarness(t, Options{Slots: 1}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b"))
	h.advance(2 * time.Second)
	if h.backend("a").Healthy || !h.backend("b").Healthy || len(h.sink.calls) != 1 {
		t.Fatalf("before: a %+v, b %+v, calls %v", h.backend("a"), h.backend("b"), h.sink.calls)
	}
	broken = true
	h.advance(10 * time.Second)
	st := h.s.Stats()
	if st.Checks[0].ProberErrors != 10 || st.Checks[0].LastProberError != "plugin exited" {
		t.Fatalf("check stats %+v, want 10 prober errors", st.Checks[0])
	}
	if h.backend("a").Healthy || !h.backend("b").Healthy || len(h.sink.calls) != 1 {
		t.Fatalf("during errors: a %+v, b %+v, calls %v: state must be held", h.backend("a"), h.backend("b"), h.sink.calls)
	}
}

// TestMissingResultFails: a batch result without a target counts as a
// failure of that target.
func TestMissingResultFails(t *testing.T) {
	p := ProberFunc(func(_ context.Context, ts []Target) ([]Result, error) {
		return []Result{{Backend: "b", OK: true}}, nil
	})
	h := newHarness(t, Options{Slots: 1}, nil)
	h.s.opt.Probers = map[string]Prober{"tcp": p}
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b"))
	h.advance(time.Second)
	if a := h.backend("a"); a.Healthy || a.Methods[0].Last.Err == "" {
		t.Fatalf("a: %+v, want down with an error", a)
	}
}

// TestAllDownEmptyTable: through the real controller, all backends down in
// one tick is one publication whose table is empty (MaglevSelect then drops
// new flows with maglev.nobackend).
func TestAllDownEmptyTable(t *testing.T) {
	up := true
	p := &script{ok: func(string, int) bool { return up }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	ctrl := control.New()
	h.sink.ctrl = ctrl
	cfg := webConfig([]control.HealthCheck{hc("tcp", 1, 2)}, "a", "b", "c")
	if err := ctrl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	h.configure(cfg)
	h.advance(2 * time.Second)
	gen := ctrl.Snapshot().Generation
	up = false
	h.advance(2 * time.Second)
	s := ctrl.Snapshot()
	if s.Generation != gen+1 || len(s.VIPs[0].Table) != 0 {
		t.Fatalf("generation %d (want %d), table length %d (want 0)", s.Generation, gen+1, len(s.VIPs[0].Table))
	}
	for _, id := range s.VIPs[0].Reals {
		if s.Reals.At(id).State != snapshot.Down {
			t.Fatalf("real %+v, want Down", s.Reals.At(id))
		}
	}
	up = true
	h.advance(time.Second)
	if s := ctrl.Snapshot(); s.Generation != gen+2 || len(s.VIPs[0].Table) != 251 {
		t.Fatalf("after recovery: generation %d, table length %d", s.Generation, len(s.VIPs[0].Table))
	}
}

// TestDrainUnaffected: a drained backend stays Draining while healthy, is
// Down while unhealthy, and Draining again after.
func TestDrainUnaffected(t *testing.T) {
	up := true
	p := &script{ok: func(b string, _ int) bool { return b != "b" || up }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	ctrl := control.New()
	h.sink.ctrl = ctrl
	cfg := webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b")
	cfg.Pools[0].Backends[1].Weight = 0
	if err := ctrl.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	h.configure(cfg)
	state := func() snapshot.State {
		s := ctrl.Snapshot()
		for _, id := range s.VIPs[0].Reals {
			if s.Reals.At(id).Backend == "b" {
				return s.Reals.At(id).State
			}
		}
		t.Fatal("no real b")
		return 0
	}
	for _, step := range []struct {
		up   bool
		want snapshot.State
	}{{true, snapshot.Draining}, {false, snapshot.Down}, {true, snapshot.Draining}} {
		up = step.up
		h.advance(2 * time.Second)
		if got := state(); got != step.want {
			t.Fatalf("b checks up=%v: state %v, want %v", step.up, got, step.want)
		}
	}
}

// flapRun alternates a's result on every probe for ten minutes and returns
// SetHealth calls per minute.
func flapRun(t *testing.T, d Dampening) (*harness, []int) {
	p := &script{ok: func(b string, n int) bool { return b != "a" || n%2 == 1 }}
	h := newHarness(t, Options{Slots: 1, Dampening: d}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b"))
	var perMinute []int
	for range 10 {
		n := len(h.sink.calls)
		h.advance(time.Minute)
		perMinute = append(perMinute, len(h.sink.calls)-n)
	}
	return h, perMinute
}

// TestDampening: a backend alternating pass/fail every probe is suppressed
// (held down) after three transitions, so rebuilds per minute stay bounded;
// it comes back within MaxSuppress once it stops flapping.
func TestDampening(t *testing.T) {
	if _, per := flapRun(t, noDamp); per[5] < 50 {
		t.Fatalf("undampened flapping: %v publications per minute, want about 60", per)
	}
	h, per := flapRun(t, Dampening{})
	for i, n := range per {
		if n > 3 || (i > 0 && n > 0) {
			t.Fatalf("dampened flapping: publications per minute %v, want ≤ 3 in the first, 0 after", per)
		}
	}
	a := h.backend("a")
	if !a.Suppressed || a.Healthy || a.Transitions < 500 {
		t.Fatalf("a: %+v, want suppressed, unhealthy, still transitioning", a)
	}
	p := h.s.opt.Probers["tcp"].(*script)
	p.ok = func(string, int) bool { return true }
	h.advance(DefaultDampening.MaxSuppress + 2*time.Second)
	if a := h.backend("a"); a.Suppressed || !a.Healthy {
		t.Fatalf("a after flapping stopped: %+v, want healthy", a)
	}
	if last := h.sink.calls[len(h.sink.calls)-1]; !last["a"] {
		t.Fatalf("last publication %v, want a healthy", last)
	}
}

// TestCoalescing: changes within the window (a and b go down in slots
// 500 ms apart) are one SetHealth call.
func TestCoalescing(t *testing.T) {
	p := &script{ok: func(b string, n int) bool { return b == "c" || n == 0 }}
	h := newHarness(t, Options{Slots: 2, Coalesce: 600 * time.Millisecond, Dampening: noDamp},
		map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b", "c"))
	h.advance(3 * time.Second)
	if len(h.sink.calls) != 1 || len(h.sink.calls[0]) != 2 {
		t.Fatalf("SetHealth calls %v, want one with a and b down", h.sink.calls)
	}
	if st := h.s.Stats(); st.Publishes != 1 {
		t.Fatalf("Publishes %d", st.Publishes)
	}
}

// TestJitter: with 10 slots, 100 targets are probed in 10 calls of 10
// spread over the interval, each target once per interval.
func TestJitter(t *testing.T) {
	p := &script{ok: func(string, int) bool { return true }}
	h := newHarness(t, Options{Slots: 10}, map[string]*script{"tcp": p})
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("b%03d", i)
	}
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, names...))
	h.advance(time.Second - 1)
	if len(p.calls) != 10 {
		t.Fatalf("%d calls in one interval, want 10", len(p.calls))
	}
	seen := map[string]bool{}
	for i, c := range p.calls {
		if len(c.targets) != 10 {
			t.Fatalf("call %d carries %d targets, want 10", i, len(c.targets))
		}
		if i > 0 && c.at.Sub(p.calls[i-1].at) != 100*time.Millisecond {
			t.Fatalf("call %d at +%v after the previous, want 100ms", i, c.at.Sub(p.calls[i-1].at))
		}
		for _, tg := range c.targets {
			seen[tg.Backend] = true
		}
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct targets, want 100", len(seen))
	}
}

// TestBatching: 10,000 targets of one method at a 1 s interval and one slot
// are one Probe call per tick, per method.
func TestBatching(t *testing.T) {
	tcp := &script{ok: func(string, int) bool { return true }}
	http := &script{ok: func(string, int) bool { return true }}
	h := newHarness(t, Options{Slots: 1}, map[string]*script{"tcp": tcp, "http": http})
	names := make([]string, 10000)
	for i := range names {
		names[i] = fmt.Sprintf("b%05d", i)
	}
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1), hc("http", 1, 1)}, names...))
	h.advance(5*time.Second - 1)
	for m, p := range map[string]*script{"tcp": tcp, "http": http} {
		if len(p.calls) != 5 {
			t.Fatalf("%s: %d calls in 5 ticks, want 5", m, len(p.calls))
		}
		for _, c := range p.calls {
			if len(c.targets) != 10000 {
				t.Fatalf("%s: a call carries %d targets, want 10000", m, len(c.targets))
			}
		}
	}
	if st := h.s.Stats(); st.Checks[0].Probes != 50000 || st.Checks[0].Calls != 5 {
		t.Fatalf("check stats %+v", st.Checks[0])
	}
}

// TestConfigure: errors leave the configuration; a reload keeps the state
// of surviving checks, starts new ones up and forgets removed backends.
func TestConfigure(t *testing.T) {
	p := &script{ok: func(b string, _ int) bool { return b != "a" }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b"))
	for _, bad := range []control.HealthCheck{{Method: "icmp"}, {Method: "tcp", Rise: -1},
		{Method: "tcp", Interval: time.Second, Timeout: 2 * time.Second}} {
		if err := h.s.Configure(webConfig([]control.HealthCheck{bad}, "a")); err == nil {
			t.Fatalf("Configure with %+v: want an error", bad)
		}
	}
	if err := h.s.Configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1), hc("tcp", 1, 1)}, "a")); err == nil {
		t.Fatal("Configure with a method twice: want an error")
	}
	h.advance(time.Second)
	if h.backend("a").Healthy {
		t.Fatal("a must be down")
	}
	h.configure(webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "c"))
	if st := h.s.Stats(); len(st.Backends) != 2 || h.backend("a").Healthy || !h.backend("c").Healthy {
		t.Fatalf("after reload: %+v", st.Backends)
	}
	// Removing the checks makes a healthy again, published.
	h.configure(webConfig(nil, "a", "c"))
	h.advance(time.Second)
	if last := h.sink.calls[len(h.sink.calls)-1]; len(last) != 1 || !last["a"] {
		t.Fatalf("last publication %v, want a healthy", last)
	}
}

// TestStartStop runs the scheduler on the real clock until a failing
// backend is published down, then stops it.
func TestStartStop(t *testing.T) {
	published := make(chan map[string]bool, 10)
	probed := make(chan struct{}, 100)
	p := ProberFunc(func(ctx context.Context, ts []Target) ([]Result, error) {
		select {
		case probed <- struct{}{}:
		default:
		}
		out := make([]Result, len(ts))
		for i, t := range ts {
			out[i] = Result{Backend: t.Backend, OK: t.Backend != "a"}
		}
		return out, nil
	})
	s := New(Options{Probers: map[string]Prober{"tcp": p}, Coalesce: time.Millisecond,
		Sink: sinkFunc(func(m map[string]bool) error { published <- maps.Clone(m); return nil })})
	cfg := webConfig([]control.HealthCheck{{Method: "tcp", Interval: 10 * time.Millisecond, Rise: 1, Fall: 2}}, "a", "b")
	s.Start()
	if err := s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-published:
		if len(m) != 1 || m["a"] {
			t.Fatalf("published %v, want a down", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no publication within 10 s")
	}
	s.Stop()
	s.Stop()
	n := len(probed)
	if st := s.Stats(); st.Publishes != 1 || st.Checks[0].Calls == 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(probed) != n {
		t.Fatal("probes after Stop")
	}
}

type sinkFunc func(map[string]bool) error

func (f sinkFunc) SetHealth(m map[string]bool) error { return f(m) }

// TestCountersSurviveReload: a check's counters and a backend's transitions
// are monotonic across reloads: one that changes nothing, one that removes
// the check (and the backend), and one that adds them back.
func TestCountersSurviveReload(t *testing.T) {
	p := &script{ok: func(b string, n int) bool { return b != "a" || n%2 == 0 }}
	h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
	cfg := webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a", "b")
	h.configure(cfg)
	h.advance(4 * time.Second)
	before := h.s.Stats()
	c := before.Checks[0]
	if c.Calls == 0 || c.Probes == 0 || h.backend("a").Transitions == 0 {
		t.Fatalf("nothing counted before the reloads: %+v, a %+v", c, h.backend("a"))
	}
	h.configure(cfg)
	if after := h.s.Stats(); after.Checks[0] != c || h.backend("a").Transitions != before.Backends[0].Transitions {
		t.Errorf("a reload that changes nothing: check %+v, a %+v; want %+v, %d transitions",
			after.Checks[0], h.backend("a"), c, before.Backends[0].Transitions)
	}
	h.configure(webConfig(nil, "b"))
	h.advance(2 * time.Second)
	h.configure(cfg)
	got := h.s.Stats().Checks[0]
	if got.Calls < c.Calls || got.Probes < c.Probes || got.Unknowns < c.Unknowns {
		t.Errorf("check removed and added back: %+v, want at least %+v", got, c)
	}
	if tr := h.backend("a").Transitions; tr < before.Backends[0].Transitions {
		t.Errorf("backend removed and added back: %d transitions, want at least %d", tr, before.Backends[0].Transitions)
	}
	h.advance(2 * time.Second)
	if more := h.s.Stats().Checks[0]; more.Calls <= got.Calls {
		t.Errorf("no calls counted after the reloads: %+v", more)
	}
}

// TestAddProberWhileRunning: a reload that uses a new method adds its
// prober to Options.Probers while the scheduler runs checks (xlbd does
// this when a reload starts a plugin); the scheduler reads the map only in
// Configure, so the race detector finds nothing.
func TestAddProberWhileRunning(t *testing.T) {
	pass := ProberFunc(func(_ context.Context, ts []Target) ([]Result, error) {
		out := make([]Result, len(ts))
		for i, t := range ts {
			out[i] = Result{Backend: t.Backend, OK: true}
		}
		return out, nil
	})
	probers := map[string]Prober{"m0": pass}
	s := New(Options{Probers: probers})
	s.Start()
	defer s.Stop()
	checks := []control.HealthCheck{{Method: "m0", Interval: time.Millisecond}}
	for i := 1; i < 50; i++ {
		if err := s.Configure(webConfig(checks, "a", "b")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
		m := fmt.Sprintf("m%d", i)
		probers[m] = pass
		checks = append(checks, control.HealthCheck{Method: m, Interval: time.Millisecond})
	}
}

// TestShardsProbeServedPools: a node of a shard probes only the pools of
// the VIPs it serves (and those they include); a node of no shard probes
// every pool, as before shards.
func TestShardsProbeServedPools(t *testing.T) {
	cfg := webConfig([]control.HealthCheck{hc("tcp", 1, 1)}, "a")
	api := control.Pool{Name: "api", Pools: []string{"inner"}, HealthChecks: cfg.Pools[0].HealthChecks,
		Backends: []control.Backend{{Name: "x", Address: netip.MustParseAddr("10.0.1.1"), Weight: 1}}}
	inner := control.Pool{Name: "inner", HealthChecks: cfg.Pools[0].HealthChecks,
		Backends: []control.Backend{{Name: "y", Address: netip.MustParseAddr("10.0.1.2"), Weight: 1}}}
	unused := control.Pool{Name: "unused", HealthChecks: cfg.Pools[0].HealthChecks,
		Backends: []control.Backend{{Name: "z", Address: netip.MustParseAddr("10.0.1.3"), Weight: 1}}}
	cfg.Pools = append(cfg.Pools, api, inner, unused)
	cfg.VIPs = append(cfg.VIPs, control.VIP{Name: "api", Address: netip.MustParseAddr("192.0.2.2"), Protocol: "tcp", Pool: "api", TableSize: 251})
	cfg.ShardNames = []string{"a", "b"}
	cfg.VIPs[0].Shards = []string{"a"}
	cfg.VIPs[1].Shards = []string{"b"}
	for _, tc := range []struct {
		shards []string
		want   []string
	}{
		{[]string{"a"}, []string{"a"}},
		{[]string{"b"}, []string{"x", "y"}},
		{nil, []string{"a", "x", "y", "z"}},
	} {
		p := &script{ok: func(string, int) bool { return true }}
		h := newHarness(t, Options{Slots: 1, Dampening: noDamp}, map[string]*script{"tcp": p})
		c := *cfg
		c.Shards = tc.shards
		h.configure(&c)
		h.advance(time.Second)
		var got []string
		for _, call := range p.calls {
			for _, tg := range call.targets {
				got = append(got, tg.Backend)
			}
		}
		slices.Sort(got)
		if got = slices.Compact(got); !slices.Equal(got, tc.want) {
			t.Errorf("shards %v: probed %v, want %v", tc.shards, got, tc.want)
		}
	}
}
