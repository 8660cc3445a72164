package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Announcers adapts a Set to route announcing: the announce blocks as
// plugin declarations, each VIP's announce parameters checked by its
// announcer, and a level-triggered reconciler that keeps every announcer's
// routes equal to the desired set.
//
// The reconciler is one goroutine (Start) through which every call to an
// announcer goes. SetDesired and Use only hand it their input and never
// wait for a plugin, so neither the data plane nor a reload ever waits for
// one. It sends an announcer the full set whenever the set changes, when
// the announcer's process is new (a restart: a new PID) and, with backoff,
// after a failed send, so that a restarted announcer converges by itself.
type Announcers struct {
	dir string
	log *slog.Logger
	// CallTimeout bounds one SetRoutes; RetryMin and RetryMax the backoff
	// after a failure; Tick how often restarts and retries are looked for;
	// SessionsEvery how often each announcer is asked for its sessions.
	// Set before Start.
	CallTimeout, RetryMin, RetryMax, Tick, SessionsEvery time.Duration

	mu      sync.Mutex
	desired []control.Route
	// params holds each VIP's announce parameters by VIP, then announcer.
	params  map[string]map[string][]byte
	plugins map[string]*Plugin
	state   map[string]*announcerState
	stopped bool // WithdrawAll was called: nothing is announced any more
	started bool
	// sessionsAt is when the announcers are next asked for their sessions.
	sessionsAt time.Time

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// announcerState is what the reconciler knows of one announcer. Guarded
// by Announcers.mu; only the reconciler's goroutine writes it.
type announcerState struct {
	// sent is the set last accepted, by the process pid.
	sent    []sdk.Route
	pid     int
	ok      bool // sent is what the announcer holds
	lastErr string
	sends   uint64
	// next is when a failed send is retried; backoff the wait after the
	// next failure.
	next    time.Time
	backoff time.Duration
	// sessions are what the announcer last reported of its sessions.
	sessions []sdk.Session
}

// AnnouncerStatus is one announcer's state, for xlbd's tables.
type AnnouncerStatus struct {
	Name string
	// Routes is how many routes it announces now (what it last accepted).
	Routes    int
	InSync    bool // it holds the desired set
	Sends     uint64
	LastError string
	// Sessions are the announcer's sessions with its peers (BGP
	// neighbors), as it last reported them, by peer.
	Sessions []sdk.Session
}

// NewAnnouncers returns the adapter for built-in announcers in dir
// (dir/bgp), made absolute as HealthChecks' is.
func NewAnnouncers(dir string, log *slog.Logger) (*Announcers, error) {
	abs, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Announcers{dir: abs, log: log, CallTimeout: 2 * time.Second, RetryMin: 100 * time.Millisecond,
		RetryMax: 5 * time.Second, Tick: 100 * time.Millisecond, SessionsEvery: 2 * time.Second,
		plugins: map[string]*Plugin{}, state: map[string]*announcerState{}, params: map[string]map[string][]byte{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Decls returns the declared announcers as route-announcer plugins, each
// without a path the built-in of its name in the plugin directory (a
// missing one fails to start, at its block).
func (a *Announcers) Decls(declared []Decl) []Decl {
	out := make([]Decl, len(declared))
	for i, d := range declared {
		d.Kind = sdk.KindRouteAnnouncer
		if d.Path == "" {
			d.Path = filepath.Join(a.dir, d.Name)
		}
		out[i] = d
	}
	return out
}

// CheckParams checks each checkable VIP announce block with its announcer
// in c, as HealthChecks.CheckParams does a health check's parameters: the
// conformed values replace those in cfg, refusals are pipeline.Errors at
// their attribute (or the nested item a path names).
func (a *Announcers) CheckParams(ctx context.Context, c *Change, cfg *control.Config, checkable func(control.Announce) bool) pipeline.Errors {
	var errs pipeline.Errors
	for vi := range cfg.VIPs {
		v := &cfg.VIPs[vi]
		for i := range v.Announce {
			an := &v.Announce[i]
			info, ok := c.Info(an.Announcer)
			if !ok || !checkable(*an) {
				continue
			}
			var validate func(context.Context, []byte) error
			if pl := c.Plugin(an.Announcer); pl != nil {
				validate = func(ctx context.Context, js []byte) error {
					cl, err := pl.RouteAnnouncer()
					if err != nil {
						return err
					}
					return cl.ValidateParams(ctx, js)
				}
			}
			var err error
			an.Params, err = checkParams(ctx, info.Params, an.Params, validate)
			what := fmt.Sprintf("VIP %q announce %q", v.Name, an.Announcer)
			errs = append(errs, Place(err, what, an.Range, an.AttrRange, "Invalid announce parameter", "Announce parameters not checked")...)
		}
	}
	return errs
}

// Use makes the set's plugins named names the announcers and cfg's VIP
// announce blocks their parameters: after Change.Done. The reconciler
// sends each announcer its routes at its next turn.
func (a *Announcers) Use(s *Set, names []string, cfg *control.Config) {
	plugins := map[string]*Plugin{}
	for _, n := range names {
		if p := s.Plugin(n); p != nil {
			plugins[n] = p
		}
	}
	params := map[string]map[string][]byte{}
	for _, v := range cfg.VIPs {
		for _, an := range v.Announce {
			if params[v.Name] == nil {
				params[v.Name] = map[string][]byte{}
			}
			params[v.Name][an.Announcer] = an.ParamsJSON()
		}
	}
	a.mu.Lock()
	a.plugins, a.params = plugins, params
	maps.DeleteFunc(a.state, func(n string, _ *announcerState) bool { return plugins[n] == nil })
	a.mu.Unlock()
	a.poke()
}

// SetDesired hands the reconciler the routes to announce now (the full
// set: control.DesiredRoutes). It never waits.
func (a *Announcers) SetDesired(routes []control.Route) {
	a.mu.Lock()
	a.desired = slices.Clone(routes)
	a.mu.Unlock()
	a.poke()
}

func (a *Announcers) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Start runs the reconciler until WithdrawAll or Stop. It may be called
// once.
func (a *Announcers) Start() {
	a.mu.Lock()
	a.started = true
	a.mu.Unlock()
	go a.run()
}

func (a *Announcers) run() {
	defer close(a.done)
	t := time.NewTicker(a.Tick)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-a.wake:
		case <-t.C:
		}
		a.reconcile(time.Now())
		a.pollSessions(time.Now())
	}
}

// pollSessions asks every running announcer for its sessions, at most
// once every SessionsEvery. An announcer that does not answer keeps what
// it last reported; one that is not running has none.
func (a *Announcers) pollSessions(now time.Time) {
	a.mu.Lock()
	if a.stopped || now.Before(a.sessionsAt) {
		a.mu.Unlock()
		return
	}
	a.sessionsAt = now.Add(a.SessionsEvery)
	plugins := maps.Clone(a.plugins)
	a.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(plugins)) {
		var ss []sdk.Session
		cl, err := plugins[name].RouteAnnouncer()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), a.CallTimeout)
			ss, err = cl.Sessions(ctx)
			cancel()
		}
		if err != nil && plugins[name].Status().PID != 0 {
			continue
		}
		a.mu.Lock()
		if st := a.state[name]; st != nil {
			st.sessions = ss
		}
		a.mu.Unlock()
	}
}

// reconcile sends every announcer that does not hold the desired set (its
// set changed, its process is new, or the last send failed and its retry
// is due) the full set, one after another, each call bounded.
func (a *Announcers) reconcile(now time.Time) {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	type job struct {
		name   string
		p      *Plugin
		routes []sdk.Route
	}
	var jobs []job
	for _, name := range slices.Sorted(maps.Keys(a.plugins)) {
		p := a.plugins[name]
		st := a.state[name]
		if st == nil {
			st = &announcerState{backoff: a.RetryMin}
			a.state[name] = st
		}
		routes := a.routesFor(name)
		pid := p.Status().PID
		switch {
		case pid == 0:
			// Not running: its restart (a new PID) brings it here again.
			st.ok = false
			continue
		case st.ok && st.pid == pid && sameRoutes(st.sent, routes):
			continue
		case !st.ok && st.pid == pid && now.Before(st.next):
			continue
		}
		jobs = append(jobs, job{name, p, routes})
	}
	a.mu.Unlock()
	for _, j := range jobs {
		pid := j.p.Status().PID
		err := a.send(j.p, j.routes)
		a.mu.Lock()
		st := a.state[j.name]
		if st == nil || a.stopped {
			a.mu.Unlock()
			continue
		}
		st.sends++
		st.pid = pid
		if err != nil {
			retry := st.backoff
			st.ok, st.lastErr, st.next = false, err.Error(), now.Add(retry)
			st.backoff = min(2*st.backoff, a.RetryMax)
			a.mu.Unlock()
			a.log.Warn("route announcer did not take the routes; retrying", "plugin", j.name, "routes", len(j.routes), "retry_in", retry, "err", err)
			continue
		}
		st.ok, st.sent, st.lastErr, st.backoff = true, j.routes, "", a.RetryMin
		a.mu.Unlock()
		a.log.Info("routes sent", "plugin", j.name, "routes", len(j.routes), "pid", pid)
	}
}

// routesFor is the desired set as announcer name gets it: each route with
// its VIP's parameters for that announcer. a.mu is held.
func (a *Announcers) routesFor(name string) []sdk.Route {
	out := make([]sdk.Route, len(a.desired))
	for i, r := range a.desired {
		out[i] = sdk.Route{Prefix: r.Prefix, VIP: r.VIP, ParamsJSON: a.params[r.VIP][name]}
	}
	return out
}

func (a *Announcers) send(p *Plugin, routes []sdk.Route) error {
	cl, err := p.RouteAnnouncer()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.CallTimeout)
	defer cancel()
	return cl.SetRoutes(ctx, routes)
}

func sameRoutes(a, b []sdk.Route) bool {
	return slices.EqualFunc(a, b, func(x, y sdk.Route) bool {
		return x.Prefix == y.Prefix && x.VIP == y.VIP && string(x.ParamsJSON) == string(y.ParamsJSON)
	})
}

// WithdrawAll stops the reconciler, so that nothing is announced again,
// and has every running announcer withdraw its routes, all at once, each
// within ctx. It returns the failures joined; it is for shutdown.
func (a *Announcers) WithdrawAll(ctx context.Context) error {
	a.Stop()
	a.mu.Lock()
	a.stopped = true
	plugins := maps.Clone(a.plugins)
	started := a.started
	a.mu.Unlock()
	if started {
		// A send under way must land before the withdrawal, not after.
		select {
		case <-a.done:
		case <-ctx.Done():
			return fmt.Errorf("routes not withdrawn: a send to an announcer did not end: %w", ctx.Err())
		}
	}
	errs := make([]error, 0, len(plugins))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, p := range plugins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := p.RouteAnnouncer()
			if err == nil {
				err = cl.WithdrawAll(ctx)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("route announcer %q: %w", name, err))
				mu.Unlock()
				return
			}
			a.mu.Lock()
			if st := a.state[name]; st != nil {
				st.sent = nil
			}
			a.mu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stop ends the reconciler (after Start), leaving the routes as they are.
// It is safe to call more than once, and without Start.
func (a *Announcers) Stop() {
	a.mu.Lock()
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.mu.Unlock()
}

// Statuses reports each announcer of the running configuration, by name.
func (a *Announcers) Statuses() []AnnouncerStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []AnnouncerStatus
	for _, name := range slices.Sorted(maps.Keys(a.plugins)) {
		s := AnnouncerStatus{Name: name}
		if st := a.state[name]; st != nil {
			s.Routes, s.InSync, s.Sends, s.LastError = len(st.sent), st.ok && sameRoutes(st.sent, a.routesFor(name)), st.sends, st.lastErr
			s.Sessions = slices.Clone(st.sessions)
		}
		out = append(out, s)
	}
	return out
}
