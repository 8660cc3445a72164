package host

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// Sources adapts a Set to config sources: the source blocks as plugin
// declarations, one Watch per running source plugin keeping the source's
// last documents, and the node states of the sources a fleet shares
// (Publish, peers).
//
// Each source runs three goroutines, all ended by Use or Stop: its Watch
// (called again when the plugin restarts, a new PID, or on Resync), the
// publication of this node's state (level-triggered, as the announcers'
// routes: sent again after a failure or a restart), and its peers' states.
// None of them waits for xlbd: they record what they get and signal
// Updates or Peers, which xlbd reads when it can.
type Sources struct {
	dir string
	log *slog.Logger
	// Tick is how often a source whose plugin is not running is looked at
	// again; RetryMin and RetryMax bound the backoff between two calls
	// that failed; CallTimeout bounds one Publish. Set before Use.
	Tick, RetryMin, RetryMax, CallTimeout time.Duration

	mu      sync.Mutex
	runs    map[string]*sourceRun
	status  *sdk.NodeStatus // this node's state, to publish
	updates chan struct{}
	peers   chan struct{}
}

// Source states (SourceState.State).
const (
	SourceWaiting     = "waiting"     // no complete update yet
	SourceOK          = "ok"          // its last update was a complete set
	SourceUnavailable = "unavailable" // it cannot read its store: the last documents stay
)

// SourceState is what xlbd knows of one config source.
type SourceState struct {
	Name  string
	State string
	// Reason says why the source is unavailable; Since is when State was
	// entered.
	Reason string
	Since  time.Time
	// Revision and Documents are the last complete set; Complete says
	// there was one (the start-up waits for it).
	Revision  string
	Documents []sdk.Document
	Complete  bool
	// Publisher is set once the source took this node's state or sent
	// the peers'; NotPublisher once it said it does not publish.
	Publisher, NotPublisher bool
}

// sourceRun is one running source plugin and its goroutines.
type sourceRun struct {
	p      *Plugin
	config string // the settings it was started with
	cancel context.CancelFunc
	done   sync.WaitGroup
	kick   chan struct{} // Resync
	pub    chan struct{} // a new state to publish

	// Guarded by Sources.mu.
	state SourceState
	// peers is the last peers update, peersOK whether there is one (and
	// it was not Unavailable).
	peers   []sdk.NodeStatus
	peersOK bool
	// peersSeen is set by the first peers update, even an Unavailable one.
	peersSeen bool
}

// NewSources returns the adapter for built-in sources in dir (dir/file,
// dir/etcd), made absolute as HealthChecks' is.
func NewSources(dir string, log *slog.Logger) (*Sources, error) {
	abs, err := absDir(dir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Sources{dir: abs, log: log, Tick: 100 * time.Millisecond, RetryMin: 100 * time.Millisecond,
		RetryMax: 5 * time.Second, CallTimeout: 5 * time.Second, runs: map[string]*sourceRun{},
		updates: make(chan struct{}, 1), peers: make(chan struct{}, 1)}, nil
}

// Decls returns the declared sources as config-source plugins, each
// without a path the built-in of its name in the plugin directory, all
// running in workDir (the main file's directory).
func (s *Sources) Decls(declared []Decl, workDir string) []Decl {
	if abs, err := filepath.Abs(workDir); err == nil {
		workDir = abs
	}
	out := make([]Decl, len(declared))
	for i, d := range declared {
		d.Kind = sdk.KindConfigSource
		if d.Path == "" {
			d.Path = filepath.Join(s.dir, d.Name)
		}
		d.Dir = workDir
		out[i] = d
	}
	return out
}

// Use makes the set's plugins named names the config sources: after
// Change.Done. A source whose plugin or settings are unchanged keeps its
// Watch and documents; one with new settings keeps its last documents
// until its first update under them; a new one starts waiting, and its
// first update comes through Updates; a source no longer named is
// forgotten.
func (s *Sources) Use(set *Set, names []string) {
	want := map[string]*Plugin{}
	for _, n := range names {
		if p := set.Plugin(n); p != nil {
			want[n] = p
		}
	}
	var stale []*sourceRun
	var started []*sourceRun
	s.mu.Lock()
	for name, r := range s.runs {
		if p := want[name]; p == nil || p != r.p || string(p.Status().Config) != r.config {
			stale = append(stale, r)
			if p == nil {
				delete(s.runs, name)
			}
		}
	}
	for name, p := range want {
		old := s.runs[name]
		config := string(p.Status().Config)
		if old != nil && old.p == p && old.config == config {
			continue
		}
		r := &sourceRun{p: p, config: config, kick: make(chan struct{}, 1), pub: make(chan struct{}, 1),
			state: SourceState{Name: name, State: SourceWaiting, Since: time.Now()}}
		if old != nil {
			// New settings: the last documents serve until the first
			// update under them.
			r.state.Revision, r.state.Documents = old.state.Revision, old.state.Documents
		}
		s.runs[name] = r
		started = append(started, r)
	}
	s.mu.Unlock()
	for _, r := range stale {
		r.cancel()
		r.done.Wait()
	}
	for _, r := range started {
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.done.Add(3)
		go s.watch(ctx, r)
		go s.publish(ctx, r)
		go s.watchPeers(ctx, r)
	}
	if len(stale)+len(started) > 0 {
		signal(s.updates)
		signal(s.peers)
	}
}

// Stop ends every source's goroutines; the plugins are the Set's to stop.
func (s *Sources) Stop() {
	s.mu.Lock()
	runs := slices.Collect(maps.Values(s.runs))
	s.runs = map[string]*sourceRun{}
	s.mu.Unlock()
	for _, r := range runs {
		r.cancel()
	}
	for _, r := range runs {
		r.done.Wait()
	}
}

// Resync has every source read everything anew: its Watch is cancelled
// and called again, and the next update is a complete set (SIGHUP).
func (s *Sources) Resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runs {
		signal(r.kick)
	}
}

// Updates signals (coalesced) that a source's state or documents changed:
// read States.
func (s *Sources) Updates() <-chan struct{} { return s.updates }

// Peers signals (coalesced) that the peers' states changed: read
// PeerStates.
func (s *Sources) Peers() <-chan struct{} { return s.peers }

// States returns each source's state, by name. Documents are shared: do
// not modify them.
func (s *Sources) States() []SourceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceState, 0, len(s.runs))
	for _, name := range slices.Sorted(maps.Keys(s.runs)) {
		out = append(out, s.runs[name].state)
	}
	return out
}

// PeerStates returns every node's state as the publishing sources last
// sent them, merged (a node several sources know is taken at its latest
// Updated), by node name; ok is false while no publishing source has sent
// a usable update, so that there is nothing to compare.
func (s *Sources) PeerStates() (nodes []sdk.NodeStatus, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	byNode := map[string]sdk.NodeStatus{}
	for _, r := range s.runs {
		if !r.peersOK {
			continue
		}
		ok = true
		for _, n := range r.peers {
			if cur, dup := byNode[n.Node]; !dup || n.Updated.After(cur.Updated) {
				byNode[n.Node] = n
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byNode)) {
		nodes = append(nodes, byNode[name])
	}
	return nodes, ok
}

// PeersKnown reports whether every source has either sent the peers'
// states once (or said it cannot read them now) or said it does not
// publish: until then a node that joins does not know whether it agrees.
func (s *Sources) PeersKnown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runs {
		if !r.peersSeen && !r.state.NotPublisher {
			return false
		}
	}
	return true
}

// Publish hands every source this node's state; each that is a Publisher
// stores it (in the background, again after a failure or a restart of its
// plugin), the others are skipped silently. It never waits.
func (s *Sources) Publish(st sdk.NodeStatus) {
	s.mu.Lock()
	s.status = &st
	for _, r := range s.runs {
		signal(r.pub)
	}
	s.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sleep waits d, or until ctx ends (false) or kick.
func sleep(ctx context.Context, d time.Duration, kick <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-kick:
	}
	return true
}

// watch calls the source's Watch, again when the stream ends (after a
// backoff, or at once for a new process) and at once on Resync.
func (s *Sources) watch(ctx context.Context, r *sourceRun) {
	defer r.done.Done()
	name := r.p.Name()
	backoff, lastPID := s.RetryMin, 0
	for ctx.Err() == nil {
		pid := r.p.Status().PID
		if pid == 0 {
			// Not running: its restart (a new PID) brings it back.
			s.ended(r, "the plugin is not running")
			sleep(ctx, s.Tick, nil)
			continue
		}
		if pid != lastPID {
			backoff = s.RetryMin
		}
		lastPID = pid
		cl, err := r.p.ConfigSource()
		if err == nil {
			wctx, cancel := context.WithCancel(ctx)
			go func() {
				select {
				case <-r.kick:
					cancel()
				case <-wctx.Done():
				}
			}()
			err = cl.Watch(wctx, func(u sdk.ConfigUpdate) error {
				s.update(r, u)
				return nil
			})
			resync := wctx.Err() != nil && ctx.Err() == nil
			cancel()
			if resync {
				continue
			}
		}
		if ctx.Err() != nil {
			return
		}
		why := "its watch ended"
		if err != nil {
			why = err.Error()
		}
		s.ended(r, why)
		s.log.Warn("config source watch ended; calling it again", "source", name, "reason", why, "retry_in", backoff)
		if !sleep(ctx, backoff, r.kick) {
			return
		}
		backoff = min(2*backoff, s.RetryMax)
	}
}

// update records one update of r's source.
func (s *Sources) update(r *sourceRun, u sdk.ConfigUpdate) {
	if u.Unavailable != "" {
		s.unavailable(r, u.Unavailable)
		return
	}
	s.mu.Lock()
	st := &r.state
	was := st.State
	if was != SourceOK {
		st.Since = time.Now()
	}
	st.State, st.Reason, st.Revision, st.Documents, st.Complete = SourceOK, "", u.Revision, u.Documents, true
	s.mu.Unlock()
	if was == SourceUnavailable {
		s.log.Info("config source available again", "source", r.p.Name(), "revision", u.Revision, "documents", len(u.Documents))
	}
	signal(s.updates)
}

// unavailable records that r's source cannot be read, logged once per
// outage: its last documents keep serving.
func (s *Sources) unavailable(r *sourceRun, reason string) {
	s.mu.Lock()
	st := &r.state
	was := st.State
	if was != SourceUnavailable {
		st.Since = time.Now()
	}
	st.State, st.Reason = SourceUnavailable, reason
	docs, complete := len(st.Documents), st.Complete
	s.mu.Unlock()
	switch {
	case was == SourceUnavailable:
	case complete:
		s.log.Warn("config source unavailable: serving the last good configuration", "source", r.p.Name(), "reason", reason, "documents", docs)
	default:
		// Nothing to serve yet: the start-up (or validate) waits.
		s.log.Warn("config source unavailable: no documents yet", "source", r.p.Name(), "reason", reason)
	}
	signal(s.updates)
}

// ended records that r's watch stream ended: unavailable until a new one
// sends a complete set.
func (s *Sources) ended(r *sourceRun, why string) {
	s.mu.Lock()
	waiting := r.state.State == SourceWaiting
	s.mu.Unlock()
	if waiting {
		// Nothing served yet: it is still waiting, with a reason.
		s.mu.Lock()
		r.state.Reason = why
		s.mu.Unlock()
		return
	}
	s.unavailable(r, why)
}

// publish stores this node's latest state through r's source whenever it
// changes, again after a failure (with backoff) and for a new process
// (whose store lost it, an etcd lease say), until ctx ends.
func (s *Sources) publish(ctx context.Context, r *sourceRun) {
	defer r.done.Done()
	t := time.NewTicker(s.Tick)
	defer t.Stop()
	var sent *sdk.NodeStatus
	sentPID, backoff := 0, s.RetryMin
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.pub:
		case <-t.C:
		}
		s.mu.Lock()
		want, not := s.status, r.state.NotPublisher
		s.mu.Unlock()
		pid := r.p.Status().PID
		if not || want == nil || pid == 0 || (want == sent && pid == sentPID) || (pid == sentPID && time.Now().Before(next)) {
			continue
		}
		cl, err := r.p.ConfigSource()
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, s.CallTimeout)
			err = cl.Publish(cctx, *want)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, sdk.ErrNotPublisher):
			s.notPublisher(r)
			return
		case err != nil:
			sentPID, sent, next = pid, nil, time.Now().Add(backoff)
			s.log.Warn("config source did not take this node's state; retrying", "source", r.p.Name(), "err", err, "retry_in", backoff)
			backoff = min(2*backoff, s.RetryMax)
		default:
			sent, sentPID, backoff = want, pid, s.RetryMin
			s.mu.Lock()
			r.state.Publisher = true
			s.mu.Unlock()
		}
	}
}

func (s *Sources) notPublisher(r *sourceRun) {
	s.mu.Lock()
	r.state.NotPublisher = true
	s.mu.Unlock()
}

// watchPeers follows the peers' states through r's source, called again
// when it ends, until ctx ends or the source says it does not publish.
func (s *Sources) watchPeers(ctx context.Context, r *sourceRun) {
	defer r.done.Done()
	backoff, lastPID := s.RetryMin, 0
	for ctx.Err() == nil {
		s.mu.Lock()
		not := r.state.NotPublisher
		s.mu.Unlock()
		if not {
			return
		}
		pid := r.p.Status().PID
		if pid == 0 {
			sleep(ctx, s.Tick, nil)
			continue
		}
		if pid != lastPID {
			backoff = s.RetryMin
		}
		lastPID = pid
		cl, err := r.p.ConfigSource()
		if err == nil {
			err = cl.WatchPeers(ctx, func(u sdk.PeersUpdate) error {
				s.mu.Lock()
				r.peers, r.peersOK, r.peersSeen = u.Nodes, u.Unavailable == "", true
				r.state.Publisher = true
				s.mu.Unlock()
				signal(s.peers)
				return nil
			})
		}
		if errors.Is(err, sdk.ErrNotPublisher) {
			s.notPublisher(r)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		r.peersOK = false
		s.mu.Unlock()
		signal(s.peers)
		if !sleep(ctx, backoff, nil) {
			return
		}
		backoff = min(2*backoff, s.RetryMax)
	}
}
