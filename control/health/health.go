// Package health schedules backend health checks and turns their results
// into backend health for the controller. It does not probe: a Prober per
// method (a built-in checker or a health-check plugin) gets one batch of
// targets per tick and returns their results, as in keepalived/HAProxy's
// interval, timeout, rise and fall model. A backend is healthy only when
// every method of its pool passes. Flapping is dampened after BGP route
// flap damping (RFC 2439): a penalty per transition, decaying exponentially,
// suppresses a backend above a threshold until it decays below another.
//
// All state is guarded by one mutex; one goroutine (Start) launches probe
// batches, each in its own goroutine so a slow method does not delay
// others, and publishes coalesced changes in one Sink.SetHealth call.
package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/xlbproject/xlb/control"
)

// Defaults for zero fields of control.HealthCheck (HAProxy's check defaults)
// and of Options.
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultSlots    = 10
	DefaultCoalesce = 100 * time.Millisecond
	// batchGrace is added to the probe timeout for a whole batch's context,
	// so that a prober can report per-target timeouts before it expires.
	batchGrace = time.Second
)

// Target is one probe a prober is asked to perform.
type Target struct {
	Backend string
	// Addr is the backend address with the health check's port (0 when it
	// sets none: the method's default).
	Addr    netip.AddrPort
	Timeout time.Duration
	// Params are the health check's parameters as one JSON object (sorted
	// keys, so equal parameters are equal bytes), shared by every target
	// of the check: read-only. Every target of one Probe call comes from
	// one health check, so they share Params.
	Params []byte
}

// Result is a prober's verdict for one target.
type Result struct {
	Backend string
	OK      bool
	// Unknown means no verdict (the prober could not probe this target,
	// say its batch's deadline came first): the check keeps its state and
	// its pass/fail counts, as for a prober error.
	Unknown bool
	Err     string
	Latency time.Duration
}

// Prober performs one method's probes. Probe is called once per tick with a
// batch of targets and returns one Result per target (a missing one counts
// as a failure). An error means the prober could not check the batch at all
// (plugin crashed or restarting): the targets keep their last known state,
// as for a Result marked Unknown. Probe may be called concurrently for
// different batches.
type Prober interface {
	Probe(ctx context.Context, targets []Target) ([]Result, error)
}

// ProberFunc adapts a function to Prober.
type ProberFunc func(ctx context.Context, targets []Target) ([]Result, error)

// Probe calls f.
func (f ProberFunc) Probe(ctx context.Context, targets []Target) ([]Result, error) {
	return f(ctx, targets)
}

// Sink receives health changes; *control.Controller is one.
type Sink interface {
	SetHealth(health map[string]bool) error
}

var _ Sink = (*control.Controller)(nil)

// Dampening configures flap dampening (RFC 2439 section 4.2 terms). Each
// transition of a backend's health adds Penalty; the penalty halves every
// HalfLife; above Suppress the backend is held down until the penalty
// decays below Reuse and its checks pass. The penalty is capped so that
// suppression lasts at most MaxSuppress after flapping stops.
type Dampening struct {
	Disabled    bool
	Penalty     float64
	Suppress    float64
	Reuse       float64
	HalfLife    time.Duration
	MaxSuppress time.Duration
}

// DefaultDampening suppresses a backend on its third transition within a
// few seconds, and lets it back at most a minute after it stops flapping.
var DefaultDampening = Dampening{Penalty: 1000, Suppress: 2000, Reuse: 750,
	HalfLife: 15 * time.Second, MaxSuppress: time.Minute}

// Options configures a Scheduler.
type Options struct {
	// Probers by method name.
	Probers map[string]Prober
	// Sink gets the changes (the controller); nil discards them.
	Sink Sink
	// Slots is the number of sub-batches one method's targets are spread
	// over within its interval (each a Probe call at its own phase), so
	// that 10,000 targets do not fire at once; at most one per target.
	Slots int
	// Coalesce is how long health changes are gathered into one
	// SetHealth call.
	Coalesce time.Duration
	// Dampening; the zero value takes DefaultDampening.
	Dampening Dampening
	// Now is the clock; time.Now when nil. Tests inject a fake one.
	Now func() time.Time
}

// Scheduler runs the health checks of a configuration.
type Scheduler struct {
	opt    Options
	now    func() time.Time
	ctx    context.Context
	cancel context.CancelFunc
	wake   chan struct{}
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	mu      sync.Mutex
	gen     uint64 // bumped by Configure; results of older batches are dropped
	probers map[string]Prober
	groups  []*group
	// counters holds every health check's counters by pool and method,
	// also those of checks a reload removed, and retired the transitions
	// of backends a reload removed: counters are monotonic for the life
	// of the process, as Prometheus expects of a _total, whatever the
	// reloads in between.
	counters map[[2]string]*counters
	retired  map[string]uint64
	backends map[string]*backend // backends with at least one check, by name
	declared map[string]bool     // every backend of the configuration
	// unhealthy is the set of backends last published unhealthy.
	unhealthy map[string]bool
	pending   bool
	publishAt time.Time

	publishes, publishErrors uint64
	lastPublishErr           string
}

// group is one health check of one pool.
type group struct {
	pool  string
	hc    control.HealthCheck // defaults applied
	slots []*slot
	*counters
}

// counters are one health check's counters (see CheckGroupStats).
type counters struct {
	calls, probes, unknowns, proberErrors, overruns uint64
	lastProberErr                                   string
}

type slot struct {
	g        *group
	targets  []Target
	next     time.Time
	inflight bool
}

type check struct {
	up         bool
	pass, fail int // consecutive
	last       Result
	lastAt     time.Time
	probes     uint64
	latencies  Latencies
}

type backend struct {
	name        string
	checks      map[string]*check // by method
	raw         bool              // every check up
	penalty     float64
	penaltyAt   time.Time
	suppressed  bool
	transitions uint64
}

// call is one Probe call in flight.
type call struct {
	gen     uint64
	s       *slot
	prober  Prober
	targets []Target
	timeout time.Duration
}

// New returns a scheduler with no checks; Configure gives it some, Start
// runs it.
func New(opt Options) *Scheduler {
	opt.Slots = cmp.Or(opt.Slots, DefaultSlots)
	opt.Coalesce = cmp.Or(opt.Coalesce, DefaultCoalesce)
	if opt.Dampening == (Dampening{}) {
		opt.Dampening = DefaultDampening
	}
	s := &Scheduler{opt: opt, now: opt.Now, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		backends: map[string]*backend{}, declared: map[string]bool{}, unhealthy: map[string]bool{},
		counters: map[[2]string]*counters{}, retired: map[string]uint64{}}
	if s.now == nil {
		s.now = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// withDefaults fills hc's zero fields; the timeout is at most the interval.
func withDefaults(hc control.HealthCheck) control.HealthCheck {
	hc.Interval = cmp.Or(hc.Interval, DefaultInterval)
	hc.Timeout = min(cmp.Or(hc.Timeout, DefaultTimeout), hc.Interval)
	hc.Rise = cmp.Or(hc.Rise, DefaultRise)
	hc.Fall = cmp.Or(hc.Fall, DefaultFall)
	return hc
}

// validate checks cfg as a whole (control.Config.Validate, which knows the
// source ranges) and that every method has a prober.
func (s *Scheduler) validate(cfg *control.Config) error {
	if errs := cfg.Validate(); len(errs) > 0 {
		return errs
	}
	var errs []error
	for _, p := range cfg.Pools {
		for _, hc := range p.HealthChecks {
			if s.opt.Probers[hc.Method] == nil {
				errs = append(errs, fmt.Errorf("pool %q health check %q: no prober for this method", p.Name, hc.Method))
			}
		}
	}
	return errors.Join(errs...)
}

// Configure replaces the checks with those of cfg (which it only reads).
// A (backend, method) pair already checked keeps its state; a new one starts
// up (passing), as Katran's and keepalived's reals do on a fresh start, so
// that a restart or reload does not black-hole a VIP until the first rise
// probes complete. Counters carry on. Options.Probers is read here, so a
// caller may add the probers of new methods before it calls Configure
// (not concurrently with it). On an error nothing changes.
func (s *Scheduler) Configure(cfg *control.Config) error {
	if err := s.validate(cfg); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.gen++
	s.probers = maps.Clone(s.opt.Probers)
	s.groups = nil
	backends := map[string]*backend{}
	s.declared = map[string]bool{}
	// A node of some shards probes only the pools of the VIPs it serves:
	// the other shards' nodes check theirs. A node of no shard checks
	// every pool, used or not, as before shards.
	var served map[string]*control.Pool
	if len(cfg.Shards) > 0 {
		served = cfg.ServedPools()
	}
	for _, p := range cfg.Pools {
		for _, b := range p.Backends {
			s.declared[b.Name] = true
		}
		if len(p.HealthChecks) == 0 || served != nil && served[p.Name] == nil {
			continue
		}
		for _, b := range p.Backends {
			old := s.backends[b.Name]
			nb := &backend{name: b.Name, checks: map[string]*check{}, transitions: s.retired[b.Name]}
			if old != nil {
				*nb = *old
				nb.checks = map[string]*check{}
			}
			delete(s.retired, b.Name)
			for _, hc := range p.HealthChecks {
				if c := old.check(hc.Method); c != nil {
					nb.checks[hc.Method] = c
				} else {
					nb.checks[hc.Method] = &check{up: true}
				}
			}
			nb.raw = nb.allUp()
			backends[b.Name] = nb
		}
		for _, hc := range p.HealthChecks {
			g := newGroup(p, withDefaults(hc), s.opt.Slots, now)
			key := [2]string{p.Name, hc.Method}
			if s.counters[key] == nil {
				s.counters[key] = &counters{}
			}
			g.counters = s.counters[key]
			s.groups = append(s.groups, g)
		}
	}
	for name, b := range s.backends {
		if backends[name] == nil && b.transitions > 0 {
			s.retired[name] = b.transitions
		}
	}
	s.backends = backends
	s.markPending(now)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

func (b *backend) check(method string) *check {
	if b == nil {
		return nil
	}
	return b.checks[method]
}

func (b *backend) allUp() bool {
	for _, c := range b.checks {
		if !c.up {
			return false
		}
	}
	return true
}

// newGroup spreads p's backends (by name) round-robin over up to slots
// sub-batches, slot k firing at phase + k·interval/slots, where phase is a
// hash of the pool and method so that groups do not fire together.
func newGroup(p control.Pool, hc control.HealthCheck, slots int, now time.Time) *group {
	g := &group{pool: p.Name, hc: hc}
	bs := slices.Clone(p.Backends)
	slices.SortFunc(bs, func(a, b control.Backend) int { return cmp.Compare(a.Name, b.Name) })
	n := min(slots, len(bs))
	if n == 0 {
		return g
	}
	params := hc.ParamsJSON()
	step := hc.Interval / time.Duration(n)
	h := fnv.New64a()
	h.Write([]byte(p.Name + "\x00" + hc.Method))
	phase := time.Duration(h.Sum64() % uint64(max(step, 1)))
	for k := range n {
		g.slots = append(g.slots, &slot{g: g, next: now.Add(phase + time.Duration(k)*step)})
	}
	for i, b := range bs {
		sl := g.slots[i%n]
		sl.targets = append(sl.targets, Target{Backend: b.Name, Addr: netip.AddrPortFrom(b.Address.Unmap(), hc.Port),
			Timeout: hc.Timeout, Params: params})
	}
	return g
}

// markPending schedules a publication within the coalescing window.
func (s *Scheduler) markPending(now time.Time) {
	if !s.pending {
		s.pending = true
		s.publishAt = now.Add(s.opt.Coalesce)
	}
}

// step returns the probe batches due at now, the health changes to publish
// (nil when none are due) and when step must run next.
func (s *Scheduler) step(now time.Time) (calls []*call, changes map[string]bool, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next = now.Add(time.Hour)
	for _, g := range s.groups {
		for _, sl := range g.slots {
			if !sl.next.After(now) {
				if sl.inflight {
					// The previous batch outlives the interval: skip
					// rather than pile up batches on a slow prober.
					g.overruns++
				} else {
					sl.inflight = true
					calls = append(calls, &call{gen: s.gen, s: sl, prober: s.probers[g.hc.Method],
						targets: sl.targets, timeout: g.hc.Timeout})
				}
				for !sl.next.After(now) {
					sl.next = sl.next.Add(g.hc.Interval)
				}
			}
			next = minTime(next, sl.next)
		}
	}
	d := s.opt.Dampening
	for _, b := range s.backends {
		if !b.suppressed {
			continue
		}
		p := b.decayed(now, d)
		if p < d.Reuse {
			b.suppressed = false
			b.penalty, b.penaltyAt = p, now
			s.markPending(now)
			continue
		}
		reuse := b.penaltyAt.Add(time.Duration(float64(d.HalfLife)*math.Log2(b.penalty/d.Reuse)) + 1)
		next = minTime(next, reuse)
	}
	if s.pending {
		if s.publishAt.After(now) {
			next = minTime(next, s.publishAt)
		} else {
			s.pending = false
			changes = s.changes()
		}
	}
	return calls, changes, next
}

// changes returns the backends whose health differs from that last
// published, and records it as published.
func (s *Scheduler) changes() map[string]bool {
	out := map[string]bool{}
	for name := range s.unhealthy {
		b := s.backends[name]
		switch {
		case !s.declared[name]:
			delete(s.unhealthy, name) // the controller forgets it too
		case b == nil || b.healthy():
			out[name] = true
			delete(s.unhealthy, name)
		}
	}
	for name, b := range s.backends {
		if !b.healthy() && !s.unhealthy[name] {
			out[name] = false
			s.unhealthy[name] = true
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (b *backend) healthy() bool { return b.raw && !b.suppressed }

func (b *backend) decayed(now time.Time, d Dampening) float64 {
	if b.penalty == 0 {
		return 0
	}
	return b.penalty * math.Exp2(-float64(now.Sub(b.penaltyAt))/float64(d.HalfLife))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// exec performs c and records its results.
func (s *Scheduler) exec(c *call) {
	ctx, cancel := context.WithTimeout(s.ctx, c.timeout+batchGrace)
	defer cancel()
	res, err := c.prober.Probe(ctx, c.targets)
	s.finish(c, res, err, s.now())
}

// finish records the results of c at now.
func (s *Scheduler) finish(c *call, res []Result, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gen != s.gen {
		return // configuration replaced meanwhile
	}
	g := c.s.g
	c.s.inflight = false
	g.calls++
	if err != nil {
		// Hold the last known state: a restarting plugin must not flap
		// every target it checks.
		g.proberErrors++
		g.lastProberErr = err.Error()
		return
	}
	byName := make(map[string]Result, len(res))
	for _, r := range res {
		byName[r.Backend] = r
	}
	for _, t := range c.targets {
		r, ok := byName[t.Backend]
		if !ok {
			r = Result{Backend: t.Backend, Err: "prober returned no result"}
		}
		g.probes++
		if r.Unknown {
			g.unknowns++
			continue
		}
		b := s.backends[t.Backend]
		ch := b.check(g.hc.Method)
		if ch == nil {
			continue
		}
		ch.probes++
		ch.last, ch.lastAt = r, now
		ch.latencies.observe(r.Latency)
		if !ch.record(r.OK, g.hc.Rise, g.hc.Fall) {
			continue
		}
		if raw := b.allUp(); raw != b.raw {
			b.raw = raw
			b.transitions++
			s.penalize(b, now)
			s.markPending(now)
		}
	}
}

// record counts one result and reports whether the check changed state.
func (c *check) record(ok bool, rise, fall int) bool {
	if ok {
		c.fail = 0
		c.pass++
		if !c.up && c.pass >= rise {
			c.up = true
			return true
		}
		return false
	}
	c.pass = 0
	c.fail++
	if c.up && c.fail >= fall {
		c.up = false
		return true
	}
	return false
}

func (s *Scheduler) penalize(b *backend, now time.Time) {
	d := s.opt.Dampening
	if d.Disabled {
		return
	}
	ceiling := d.Reuse * math.Exp2(float64(d.MaxSuppress)/float64(d.HalfLife))
	b.penalty = min(b.decayed(now, d)+d.Penalty, ceiling)
	b.penaltyAt = now
	if b.penalty > d.Suppress {
		b.suppressed = true
	}
}

// publish hands changes to the sink.
func (s *Scheduler) publish(changes map[string]bool) {
	var err error
	if s.opt.Sink != nil {
		err = s.opt.Sink.SetHealth(changes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publishes++
	if err != nil {
		s.publishErrors++
		s.lastPublishErr = err.Error()
	}
}

// Start runs the scheduler until Stop.
func (s *Scheduler) Start() {
	s.wg.Add(1)
	go s.run()
}

func (s *Scheduler) run() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		calls, changes, next := s.step(s.now())
		for _, c := range calls {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.exec(c)
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}()
		}
		if changes != nil {
			s.publish(changes)
			continue // publishing took time; re-check what is due
		}
		t.Reset(next.Sub(s.now()))
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Stop cancels probes in flight and waits for the scheduler's goroutines.
// It may be called more than once, and without Start.
func (s *Scheduler) Stop() {
	s.once.Do(func() {
		close(s.stop)
		s.cancel()
	})
	s.wg.Wait()
}
