package main

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// revokeTimeout bounds the revocation of the lease when a session ends.
const revokeTimeout = time.Second

// Publish stores the JSON of st at status_prefix + st.Node, under a lease
// of lease_ttl that the plugin keeps alive: etcd forgets the state
// lease_ttl after the plugin stops. It returns once the state is stored,
// or with the reason it is not; the plugin keeps trying to store the
// latest state it was given (after an outage, or when the lease ended, on
// a new lease) until it is.
func (s *source) Publish(ctx context.Context, st sdk.NodeStatus) error {
	if st.Node == "" {
		return errors.New("a node state needs the node's name")
	}
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	sess, _, err := s.current()
	if err != nil {
		return err
	}
	p := sess.publisher()
	if p == nil {
		return errors.New("etcd source: reconfigured meanwhile")
	}
	return p.publish(ctx, sess.set.StatusPrefix+st.Node, js)
}

// publisher keeps the latest state stored under a lease: one goroutine
// (run) owns the lease and does every write, Publish hands it states.
type publisher struct {
	sess *session
	wake chan struct{} // a new state; buffered
	done chan struct{} // closed when run has ended

	mu    sync.Mutex
	seq   uint64 // of the latest state handed over
	key   string
	value []byte
	// stored is the seq of the latest state stored (or failed to be:
	// err), attempted is closed and replaced after each attempt.
	stored    uint64
	err       error
	attempted chan struct{}
}

// publisher returns the session's publisher, starting it on first use; nil
// once the session has ended.
func (s *session) publisher() *publisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return nil
	}
	if s.pub == nil {
		s.pub = &publisher{sess: s, wake: make(chan struct{}, 1), done: make(chan struct{}), attempted: make(chan struct{})}
		go s.pub.run()
	}
	return s.pub
}

func (p *publisher) publish(ctx context.Context, key string, value []byte) error {
	p.mu.Lock()
	p.seq++
	seq := p.seq
	p.key, p.value = key, value
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	for {
		p.mu.Lock()
		stored, err, attempted := p.stored, p.err, p.attempted
		p.mu.Unlock()
		if stored >= seq {
			return err
		}
		select {
		case <-attempted:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.done:
			return errors.New("etcd source: reconfigured meanwhile")
		}
	}
}

// leaseState is the lease run holds and what it stored under it.
type leaseState struct {
	id     clientv3.LeaseID // 0: none
	alive  <-chan *clientv3.LeaseKeepAliveResponse
	stop   context.CancelFunc // ends the keep-alives
	seq    uint64             // the state stored under it; 0: none
	key    string
	failed bool // the last attempt failed (logged once until one works)
}

// run writes each new state, keeps the lease alive, and takes a new lease
// and writes the latest state again when the lease ends (an outage longer
// than the lease, a revocation). When the session ends it revokes the
// lease, so that the state goes at once rather than lease_ttl later.
func (p *publisher) run() {
	defer close(p.done)
	ctx := p.sess.ctx
	var l leaseState
	defer func() {
		if l.id != 0 {
			l.stop()
			// The session has ended, so client() refuses; the client it
			// made stays open until close, which waits for this.
			p.sess.mu.Lock()
			cli := p.sess.cli
			p.sess.mu.Unlock()
			if cli != nil {
				p.revoke(cli, l.id)
			}
		}
	}()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		p.mu.Lock()
		seq, key, value := p.seq, p.key, p.value
		p.mu.Unlock()
		if seq > l.seq {
			err := p.store(ctx, &l, seq, key, value)
			p.mu.Lock()
			p.stored, p.err = seq, err
			close(p.attempted)
			p.attempted = make(chan struct{})
			p.mu.Unlock()
			if err != nil {
				retry.Reset(probeInterval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-retry.C:
		case _, ok := <-l.alive:
			if !ok && ctx.Err() == nil {
				p.sess.log.Warn("the lease of this node's state ended: storing it again under a new one", "key", l.key, "lease", int64(l.id))
				l.stop()
				l = leaseState{}
			}
		}
	}
}

// store writes a state under the lease, taking a lease first when there
// is none.
func (p *publisher) store(ctx context.Context, l *leaseState, seq uint64, key string, value []byte) error {
	err := p.put(ctx, l, key, value)
	if err != nil {
		p.sess.check(err)
		if !l.failed {
			p.sess.log.Warn("cannot store this node's state: trying again", "key", key, "error", errorText(err))
		}
		l.failed = true
		return err
	}
	if l.failed {
		p.sess.log.Info("this node's state is stored again", "key", key, "lease", int64(l.id))
	}
	l.failed = false
	l.seq = seq
	return nil
}

func (p *publisher) put(ctx context.Context, l *leaseState, key string, value []byte) error {
	cli, err := p.sess.client()
	if err != nil {
		return err
	}
	timeout := p.sess.set.DialTimeout
	if l.id == 0 {
		gctx, cancel := context.WithTimeout(ctx, timeout)
		g, err := cli.Grant(gctx, int64(p.sess.set.LeaseTTL/time.Second))
		cancel()
		if err != nil {
			return err
		}
		kctx, stop := context.WithCancel(ctx)
		alive, err := cli.KeepAlive(kctx, g.ID)
		if err != nil {
			stop()
			p.revoke(cli, g.ID)
			return err
		}
		*l = leaseState{id: g.ID, alive: alive, stop: stop, failed: l.failed}
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Put(pctx, key, string(value), clientv3.WithLease(l.id)); err != nil {
		if errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound) {
			l.stop()
			*l = leaseState{failed: l.failed}
		}
		return err
	}
	if l.key != "" && l.key != key {
		// The node was renamed: its old state must not linger until the
		// lease ends (it never would: the lease is kept alive).
		if _, err := cli.Delete(pctx, l.key); err != nil {
			p.sess.log.Warn("cannot delete this node's state under its former name", "key", l.key, "error", errorText(err))
		}
	}
	l.key = key
	return nil
}

func (p *publisher) revoke(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	_, _ = cli.Revoke(ctx, id)
}
