// Command etcd is xlb's etcd config-source plugin: it watches a key prefix
// whose keys hold configuration fragments, sends xlbd the complete set at
// each etcd revision, and carries each node's applied state to the fleet
// under a status prefix, held by a lease (see README.md). xlbd starts it;
// run by hand it refuses.
package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/xlbproject/xlb/plugins/sdk"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// version is reported by Info.
const version = "0.1.0"

func main() {
	// JSON lines on stderr: the host re-logs each under the plugin's name.
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	sdk.ServeConfigSource(newSource(log))
}

// source is the plugin. Its settings and the etcd client live in a
// session, which a Configure with other settings replaces: the calls in
// progress (Watch, WatchPeers, the publisher) end their work on the old
// one and start again on the new one, from a fresh read.
type source struct {
	log hclog.Logger

	mu   sync.Mutex
	sess *session // nil before the first Configure
	raw  []byte   // the settings sess was made from, to spot a no-op Configure
	// changed is closed, and replaced, when sess is.
	changed chan struct{}
}

func newSource(log hclog.Logger) *source {
	return &source{log: log, changed: make(chan struct{})}
}

func (s *source) Describe() sdk.Info {
	return sdk.Info{Version: version, Schema: schema}
}

// Configure validates the settings and, when they differ from the current
// ones, starts a new session. It does not contact etcd: an unreachable
// etcd is an outage that Watch reports, not a configuration error.
func (s *source) Configure(config []byte) error {
	set, err := parseSettings(config)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The TLS files are read anew: a Configure naming the same files
	// after they were renewed must take the new certificates.
	if s.sess != nil && bytes.Equal(config, s.raw) && bytes.Equal(s.sess.set.files, set.files) {
		return nil
	}
	old := s.sess
	s.sess, s.raw = newSession(set, s.log), bytes.Clone(config)
	close(s.changed)
	s.changed = make(chan struct{})
	if old != nil {
		old.close()
	}
	return nil
}

// current returns the session and a channel closed when it is replaced.
func (s *source) current() (*session, <-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil, nil, errors.New("etcd source: not configured")
	}
	return s.sess, s.changed, nil
}

// onSession runs f on the current session until ctx ends or f returns, and
// again on the next session when a Configure replaces it meanwhile.
func (s *source) onSession(ctx context.Context, f func(ctx context.Context, sess *session) error) error {
	for {
		sess, changed, err := s.current()
		if err != nil {
			return err
		}
		sctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(sess.ctx, cancel)
		err = f(sctx, sess)
		stop()
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-changed:
			continue
		default:
			return err
		}
	}
}

// session is one set of settings and the etcd client made from them.
type session struct {
	set *settings
	log hclog.Logger
	// ctx ends when a Configure replaces the session.
	ctx    context.Context
	cancel context.CancelFunc

	mu  sync.Mutex
	cli *clientv3.Client // made on first use
	pub *publisher       // started by the first Publish
}

func newSession(set *settings, log hclog.Logger) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{set: set, log: log, ctx: ctx, cancel: cancel}
}

// client returns the session's etcd client, making it on first use. Making
// it fails, after dial_timeout, only when it must authenticate
// (username and password) and etcd does not answer; it is tried again at
// the next call.
func (s *session) client() (*clientv3.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil, s.ctx.Err()
	}
	if s.cli != nil {
		return s.cli, nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.set.Endpoints,
		DialTimeout: s.set.DialTimeout,
		TLS:         s.set.TLS,
		Username:    s.set.Username,
		Password:    s.set.Password,
		// The plugin logs what matters itself, as hclog lines the host
		// understands; the client's own zap lines would be noise.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	s.cli = cli
	return cli, nil
}

// check makes the next client call make a new client after a failure,
// when the client authenticates (username and password): etcd forgets its
// simple tokens when it restarts, and the client, asking for a new one,
// sends the stale one along, which etcd 3.4 refuses, even for that
// request, until the caller's deadline: a client that has been through a
// restart can stay locked out, with only a timeout to show for it. A new
// client authenticates afresh.
func (s *session) check(err error) {
	if s.set.Username == "" && !errors.Is(rpctypes.Error(err), rpctypes.ErrInvalidAuthToken) {
		return
	}
	s.mu.Lock()
	cli := s.cli
	s.cli = nil
	s.mu.Unlock()
	if cli != nil {
		s.log.Debug("connecting to etcd anew, to authenticate afresh", "error", errorText(err))
		cli.Close()
	}
}

// close ends the session: its publisher revokes its lease (best effort),
// then the client closes.
func (s *session) close() {
	s.mu.Lock()
	s.cancel() // under mu: no publisher starts after it
	pub := s.pub
	s.mu.Unlock()
	if pub != nil {
		<-pub.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli != nil {
		s.cli.Close()
		s.cli = nil
	}
}

var (
	_ sdk.ConfigSource = (*source)(nil)
	_ sdk.Publisher    = (*source)(nil)
	_ sdk.Describer    = (*source)(nil)
	_ sdk.Configurer   = (*source)(nil)
)
