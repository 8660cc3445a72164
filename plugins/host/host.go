// Package host launches, checksums, supervises and restarts xlb's plugin
// processes over HashiCorp go-plugin (gRPC, AutoMTLS, the sdk handshake).
// It follows go-plugin's host side as Nomad and Packer use it, adding what
// a load balancer needs: a crashed plugin is detected within the poll
// interval (100 ms) and restarted with exponential backoff, its
// configuration is re-sent after every start, its logs join xlbd's under
// plugin=<name>, and on Linux the kernel kills it when xlbd dies (even by
// SIGKILL). Prober adapts a health-checker plugin to control/health. Set
// holds the plugins of the running configuration and changes them as a
// transaction (see set.go); HealthChecks is its health-check adapter.
package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Spec declares one plugin.
type Spec struct {
	Name   string // the plugin's name in HCL; logs carry plugin=<Name>
	Path   string // the executable: an absolute path, never looked up on $PATH
	SHA256 string // hex digest of the executable; empty: not checked
	Kind   sdk.Kind
	// Dir is the plugin's working directory; empty: xlbd's. A config
	// source runs in the main file's directory, so that the relative
	// paths in its settings are relative to that file.
	Dir string
	// Config is the evaluated HCL block as a JSON object; Configure sends
	// it conformed to the schema the plugin reports (see Conform).
	Config []byte
}

// Options tune supervision. Zero fields take the defaults noted.
type Options struct {
	Logger       *slog.Logger     // slog.Default()
	MinBackoff   time.Duration    // 100 ms: the delay before the first restart
	MaxBackoff   time.Duration    // 10 s: the delay doubles up to this
	ResetAfter   time.Duration    // 30 s: a run this long resets the delay
	StartTimeout time.Duration    // 10 s: handshake, Info and Configure
	Poll         time.Duration    // 100 ms: how often an exit is looked for
	Now          func() time.Time // time.Now
}

// State is a plugin's supervision state.
type State int32

const (
	StateStopped    State = iota // not started, or stopped
	StateStarting                // first launch in progress
	StateRunning                 // serving
	StateRestarting              // exited or failed to start; a restart is due
	StateFailed                  // refused (checksum, kind, configuration): not retried
)

func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateRunning:
		return "running"
	case StateRestarting:
		return "restarting"
	case StateFailed:
		return "failed"
	}
	return "stopped"
}

// Status is a snapshot of a plugin's supervision.
type Status struct {
	Name      string
	State     State
	PID       int       // 0 unless running
	Restarts  uint64    // launches after the first
	LastError string    // why it last exited or failed to start
	Since     time.Time // when State was entered
	Info      sdk.Info  // what the running (or last) instance reported
	Config    []byte    // the settings it runs with (Spec.Config, or the last accepted by Reconfigure)
}

// ChecksumError refuses an executable whose SHA-256 is not the declared one.
type ChecksumError struct {
	Path, Expected, Actual string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("plugin %s: checksum mismatch: sha256 is %s, expected %s", e.Path, e.Actual, e.Expected)
}

// errPermanent marks a launch error that a restart cannot fix.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// ErrNotRunning is returned by calls made while the plugin is not serving.
var ErrNotRunning = errors.New("plugin is not running")

// client is what every sdk client kind offers.
type client interface {
	Info(ctx context.Context) (sdk.Info, error)
	Configure(ctx context.Context, config []byte) error
}

// Plugin is one supervised plugin process (one at a time).
type Plugin struct {
	spec Spec
	opt  Options
	log  *slog.Logger
	want []byte // decoded SHA256, nil when not checked

	mu       sync.Mutex
	state    State
	pid      int
	restarts uint64
	lastErr  string
	since    time.Time
	info     sdk.Info
	raw      any // the dispensed sdk client while running
	started  bool

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// withDefaults fills opt's zero fields.
func (opt Options) withDefaults() Options {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.MinBackoff <= 0 {
		opt.MinBackoff = 100 * time.Millisecond
	}
	if opt.MaxBackoff < opt.MinBackoff {
		opt.MaxBackoff = max(10*time.Second, opt.MinBackoff)
	}
	if opt.ResetAfter <= 0 {
		opt.ResetAfter = 30 * time.Second
	}
	if opt.StartTimeout <= 0 {
		opt.StartTimeout = 10 * time.Second
	}
	if opt.Poll <= 0 {
		opt.Poll = 100 * time.Millisecond
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return opt
}

// New checks spec and returns a stopped Plugin; it starts nothing.
func New(spec Spec, opt Options) (*Plugin, error) {
	if spec.Name == "" {
		return nil, errors.New("plugin: a name is required")
	}
	if spec.Path == "" {
		return nil, fmt.Errorf("plugin %q: path is required", spec.Name)
	}
	if !filepath.IsAbs(spec.Path) {
		// exec.Command would look a bare name up on $PATH and run
		// whatever binary of that name it finds there.
		return nil, fmt.Errorf("plugin %q: path %q is not absolute", spec.Name, spec.Path)
	}
	if _, ok := sdk.PluginMap[string(spec.Kind)]; !ok {
		return nil, fmt.Errorf("plugin %q: unknown kind %q", spec.Name, spec.Kind)
	}
	var want []byte
	if spec.SHA256 != "" {
		b, err := hex.DecodeString(spec.SHA256)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("plugin %q: sha256 %q is not 64 hexadecimal digits", spec.Name, spec.SHA256)
		}
		want = b
	}
	opt = opt.withDefaults()
	return &Plugin{
		spec: spec, opt: opt, want: want,
		log:  opt.Logger.With("plugin", spec.Name),
		stop: make(chan struct{}), done: make(chan struct{}),
	}, nil
}

// Name is the plugin's declared name.
func (p *Plugin) Name() string { return p.spec.Name }

// Start launches the plugin and returns once it serves and has accepted
// its configuration, or with the reason it did not (then the plugin is
// failed and not retried). From then on it is supervised until Stop.
// Start may be called once.
func (p *Plugin) Start() error {
	p.mu.Lock()
	if p.started {
		p.mu.Unlock()
		return fmt.Errorf("plugin %q: already started", p.spec.Name)
	}
	p.started = true
	p.setLocked(StateStarting, "")
	p.mu.Unlock()
	first := make(chan error, 1)
	go p.supervise(first)
	return <-first
}

// Stop kills the plugin and ends supervision. It is safe to call more than
// once, and before Start.
func (p *Plugin) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		<-p.done
	}
}

// Status reports the plugin's supervision state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{Name: p.spec.Name, State: p.state, PID: p.pid, Restarts: p.restarts,
		LastError: p.lastErr, Since: p.since, Info: p.info, Config: p.spec.Config}
}

// HealthChecker returns the running health-checker client, or an error
// while the plugin is not running or is another kind. The client goes
// stale when the process exits: fetch it per use.
func (p *Plugin) HealthChecker() (*sdk.HealthCheckerClient, error) {
	return running[*sdk.HealthCheckerClient](p, "a health checker")
}

// RouteAnnouncer returns the running route-announcer client, as
// HealthChecker does for health checkers.
func (p *Plugin) RouteAnnouncer() (*sdk.RouteAnnouncerClient, error) {
	return running[*sdk.RouteAnnouncerClient](p, "a route announcer")
}

// ConfigSource returns the running config-source client, as HealthChecker
// does for health checkers.
func (p *Plugin) ConfigSource() (*sdk.ConfigSourceClient, error) {
	return running[*sdk.ConfigSourceClient](p, "a config source")
}

// running returns p's client of type T while p runs, or why not; what
// names the kind T is.
func running[T any](p *Plugin, what string) (T, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var zero T
	if p.state != StateRunning {
		msg := p.state.String()
		if p.lastErr != "" {
			msg += ": " + p.lastErr
		}
		return zero, fmt.Errorf("plugin %q: %w (%s)", p.spec.Name, ErrNotRunning, msg)
	}
	c, ok := p.raw.(T)
	if !ok {
		return zero, fmt.Errorf("plugin %q is a %s, not %s", p.spec.Name, p.spec.Kind, what)
	}
	return c, nil
}

// Reconfigure sends config (a JSON object), conformed to the plugin's
// schema, to the running plugin and keeps it for later restarts. Refused
// (*sdk.ConfigError values) or failed, the plugin keeps the configuration
// it had.
func (p *Plugin) Reconfigure(ctx context.Context, config []byte) error {
	p.mu.Lock()
	cl, ok := p.raw.(client)
	running := p.state == StateRunning
	schema := p.info.Schema
	p.mu.Unlock()
	if !running || !ok {
		return fmt.Errorf("plugin %q: %w", p.spec.Name, ErrNotRunning)
	}
	conformed, err := conformConfig(schema, config)
	if err == nil {
		err = cl.Configure(ctx, conformed)
	}
	if err != nil {
		return fmt.Errorf("plugin %q: configuration refused: %w", p.spec.Name, err)
	}
	p.keep(config)
	return nil
}

// keep makes config the configuration sent after a restart, without
// sending it now.
func (p *Plugin) keep(config []byte) {
	p.mu.Lock()
	p.spec.Config = config
	p.mu.Unlock()
}

// setLocked enters state s; p.mu is held.
func (p *Plugin) setLocked(s State, lastErr string) {
	p.state, p.since = s, p.opt.Now()
	if lastErr != "" {
		p.lastErr = lastErr
	}
}

// supervise launches the plugin, reports the first launch on first, and
// restarts it until Stop.
//
// The goroutine is locked to its OS thread and never unlocks, so every
// launch forks from this one thread and the thread lives (and Pdeathsig
// stays armed) until supervision ends, by which time the plugin is dead.
// Exiting while locked makes the runtime discard the thread.
func (p *Plugin) supervise(first chan<- error) {
	runtime.LockOSThread()
	defer close(p.done)
	backoff := p.opt.MinBackoff
	for launches := 0; ; launches++ {
		c, err := p.launch()
		if launches == 0 {
			// Failed before Start returns, so that its caller sees it.
			if err != nil {
				p.mu.Lock()
				p.setLocked(StateFailed, err.Error())
				p.mu.Unlock()
			}
			first <- err
			if err != nil {
				return
			}
		}
		if err != nil {
			var perm errPermanent
			p.mu.Lock()
			if errors.As(err, &perm) {
				p.setLocked(StateFailed, err.Error())
				p.mu.Unlock()
				p.log.Error("plugin failed; not restarting", "error", err)
				return
			}
			p.setLocked(StateRestarting, err.Error())
			p.mu.Unlock()
			p.log.Warn("plugin restart failed", "error", err, "retry_in", backoff)
		} else {
			startedAt := p.opt.Now()
			if !p.watch(c) {
				p.terminate(c)
				c.Kill()
				p.mu.Lock()
				p.raw, p.pid = nil, 0
				p.setLocked(StateStopped, "")
				p.mu.Unlock()
				return
			}
			if p.opt.Now().Sub(startedAt) >= p.opt.ResetAfter {
				backoff = p.opt.MinBackoff
			}
			p.mu.Lock()
			msg := fmt.Sprintf("plugin process %d exited", p.pid)
			p.raw, p.pid = nil, 0
			p.setLocked(StateRestarting, msg)
			p.mu.Unlock()
			c.Kill() // reap go-plugin's goroutines and connections
			p.log.Warn("plugin exited; restarting", "retry_in", backoff)
		}
		select {
		case <-p.stop:
			p.mu.Lock()
			p.setLocked(StateStopped, "")
			p.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, p.opt.MaxBackoff)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

// terminate lets a stopped route announcer leave cleanly before c.Kill:
// go-plugin's shutdown ends the process without the SDK's Stop, and a BGP
// session closed without a Cease is kept by the routers for the
// graceful-restart time. So it gets SIGTERM, as when xlbd dies, and a
// little over the SDK's one second to exit.
func (p *Plugin) terminate(c *plugin.Client) {
	p.mu.Lock()
	pid := p.pid
	p.mu.Unlock()
	if p.spec.Kind != sdk.KindRouteAnnouncer || pid == 0 || syscall.Kill(pid, syscall.SIGTERM) != nil {
		return
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end) && !c.Exited(); {
		<-t.C
	}
}

// watch polls c until its process exits (true) or Stop is called (false).
// go-plugin marks the client exited as soon as Wait returns.
func (p *Plugin) watch(c *plugin.Client) bool {
	t := time.NewTicker(p.opt.Poll)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return false
		case <-t.C:
			if c.Exited() {
				return true
			}
		}
	}
}

// launch starts one instance, checks who it is, configures it and marks
// the plugin running. It must be called from the supervisor's locked
// thread. On error nothing is left running.
func (p *Plugin) launch() (*plugin.Client, error) {
	cmd := exec.Command(p.spec.Path)
	cmd.Dir = p.spec.Dir
	setPdeathsig(cmd, deathSignal(p.spec.Kind))
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{string(p.spec.Kind): sdk.PluginMap[string(p.spec.Kind)]},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     p.opt.StartTimeout,
		Logger:           newHCLogger(p.log),
		Stderr:           io.Discard, // go-plugin re-logs each line to Logger
		SyncStderr:       &lineWriter{log: p.log, stream: "stderr"},
		SyncStdout:       &lineWriter{log: p.log, stream: "stdout"},
	}
	if p.want != nil {
		// Our own check first, for an error that names both digests;
		// go-plugin checks again just before it executes the file.
		if err := p.checksum(); err != nil {
			return nil, errPermanent{err}
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: p.want, Hash: sha256.New()}
	}
	c := plugin.NewClient(cfg)
	raw, err := p.connect(c)
	if err != nil {
		c.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			err = errPermanent{fmt.Errorf("plugin %q: %s: %w", p.spec.Name, p.spec.Path, err)}
		}
		return nil, err
	}
	pid := 0
	if rc := c.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	p.mu.Lock()
	p.raw, p.pid = raw, pid
	p.setLocked(StateRunning, "")
	restarts := p.restarts
	p.mu.Unlock()
	p.log.Info("plugin running", "pid", pid, "version", p.Status().Info.Version, "restarts", restarts)
	return c, nil
}

// connect does the handshake, dispenses the client, checks its kind and
// sends the configuration.
func (p *Plugin) connect(c *plugin.Client) (any, error) {
	rpc, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("plugin %q: starting %s: %w", p.spec.Name, p.spec.Path, err)
	}
	raw, err := rpc.Dispense(string(p.spec.Kind))
	if err != nil {
		return nil, fmt.Errorf("plugin %q: %w", p.spec.Name, err)
	}
	cl, ok := raw.(client)
	if !ok {
		return nil, errPermanent{fmt.Errorf("plugin %q: unexpected client %T", p.spec.Name, raw)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opt.StartTimeout)
	defer cancel()
	in, err := cl.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: info: %w", p.spec.Name, err)
	}
	if in.Kind != p.spec.Kind {
		return nil, errPermanent{fmt.Errorf("plugin %q: %s is a %q plugin, declared as %q", p.spec.Name, p.spec.Path, in.Kind, p.spec.Kind)}
	}
	p.mu.Lock()
	p.info = in
	config := p.spec.Config // Reconfigure may have replaced it
	p.mu.Unlock()
	config, err = conformConfig(in.Schema, config)
	if err == nil {
		err = cl.Configure(ctx, config)
	}
	if err != nil {
		var ce *sdk.ConfigError
		err = fmt.Errorf("plugin %q: configuration refused: %w", p.spec.Name, err)
		if errors.As(err, &ce) {
			return nil, errPermanent{err}
		}
		return nil, err
	}
	return raw, nil
}

// deathSignal is the signal the kernel sends a plugin of kind when xlbd
// dies. SIGKILL, so that nothing outlives xlbd, except for route
// announcers: they get SIGTERM, on which the SDK has them tell their peers
// they are leaving (a BGP Cease) before they exit, so that routers drop a
// dead node's routes at once instead of keeping them for the
// graceful-restart time, which is meant for the announcer's own crash.
func deathSignal(kind sdk.Kind) syscall.Signal {
	if kind == sdk.KindRouteAnnouncer {
		return syscall.SIGTERM
	}
	return syscall.SIGKILL
}

// checksum hashes the executable and compares it with the declared digest.
func (p *Plugin) checksum() error {
	f, err := os.Open(p.spec.Path)
	if err != nil {
		return fmt.Errorf("plugin %q: %w", p.spec.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("plugin %q: hashing %s: %w", p.spec.Name, p.spec.Path, err)
	}
	if got := h.Sum(nil); string(got) != string(p.want) {
		return &ChecksumError{Path: p.spec.Path, Expected: strings.ToLower(p.spec.SHA256), Actual: hex.EncodeToString(got)}
	}
	return nil
}
