package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Timing of the watch loops, documented in README.md.
const (
	// probeInterval is how often a watching loop checks that etcd answers
	// (a read of one key that needs the cluster's leader): a killed etcd
	// leaves the client's watch waiting silently, so the check is what
	// turns an outage into an Unavailable update, within probeInterval +
	// dial_timeout.
	probeInterval = time.Second
	// readTimeout bounds the read of a whole prefix, which may be large.
	readTimeout = 30 * time.Second
)

// Watch sends the documents under prefix: all of them at once, then the
// complete set again after each change (see follow).
func (s *source) Watch(ctx context.Context, send func(sdk.ConfigUpdate) error) error {
	return s.onSession(ctx, func(ctx context.Context, sess *session) error {
		return sess.follow(ctx, sess.set.Prefix, "configuration",
			func(kvs map[string][]byte, rev int64) error {
				return send(sdk.ConfigUpdate{Revision: strconv.FormatInt(rev, 10), Documents: documents(kvs)})
			},
			func(reason string) error { return send(sdk.ConfigUpdate{Unavailable: reason}) })
	})
}

// WatchPeers sends the nodes' states under status_prefix, as Watch sends
// documents. A value that is not a NodeStatus is left out and logged.
func (s *source) WatchPeers(ctx context.Context, send func(sdk.PeersUpdate) error) error {
	return s.onSession(ctx, func(ctx context.Context, sess *session) error {
		bad := map[string]string{} // key -> value logged as not decoding, to log it once
		return sess.follow(ctx, sess.set.StatusPrefix, "node states",
			func(kvs map[string][]byte, _ int64) error {
				return send(sdk.PeersUpdate{Nodes: sess.statuses(kvs, bad)})
			},
			func(reason string) error { return send(sdk.PeersUpdate{Unavailable: reason}) })
	})
}

// documents names and orders the values of a prefix as the host takes them.
func documents(kvs map[string][]byte) []sdk.Document {
	docs := make([]sdk.Document, 0, len(kvs))
	for _, k := range slices.Sorted(maps.Keys(kvs)) {
		docs = append(docs, sdk.Document{Name: "etcd:" + k, Format: format(kvs[k]), Content: kvs[k]})
	}
	return docs
}

// format is "json" when the value's first non-blank byte is '{' (native
// HCL cannot start with one), else "hcl".
func format(v []byte) string {
	if v = bytes.TrimLeft(v, " \t\r\n"); len(v) > 0 && v[0] == '{' {
		return "json"
	}
	return "hcl"
}

// statuses decodes the nodes' states, ordered by key. A value that does
// not decode is logged (once until it changes) and left out.
func (s *session) statuses(kvs map[string][]byte, bad map[string]string) []sdk.NodeStatus {
	out := make([]sdk.NodeStatus, 0, len(kvs))
	for _, k := range slices.Sorted(maps.Keys(kvs)) {
		var st sdk.NodeStatus
		err := json.Unmarshal(kvs[k], &st)
		if err == nil && st.Node == "" {
			err = errors.New("no node name")
		}
		if err != nil {
			if bad[k] != string(kvs[k]) {
				s.log.Warn("a node state that does not decode is left out", "key", k, "error", err)
				bad[k] = string(kvs[k])
			}
			continue
		}
		delete(bad, k)
		out = append(out, st)
	}
	for k := range bad {
		if _, ok := kvs[k]; !ok {
			delete(bad, k)
		}
	}
	return out
}

// follow keeps a copy of every key under prefix and calls set with it, and
// the revision it is at, after the first read and after each change (one
// call per watch response: a transaction is one change), until ctx ends
// (nil) or set or down fails. When etcd stops answering it calls down once
// with the reason, and tries again every probeInterval; when etcd is back
// it calls set with the copy it has and resumes the watch from the
// revision after that copy's, so that every change made meanwhile arrives
// once. When that revision has been compacted away it reads the prefix
// anew.
func (s *session) follow(ctx context.Context, prefix, what string, set func(map[string][]byte, int64) error, down func(string) error) error {
	f := &follower{sess: s, prefix: prefix, what: what, set: set, down: down}
	// ended: the caller is done, or the session is (a Configure closes
	// its client, which may end the watch before ctx, derived from the
	// session's, is done).
	ended := func() bool { return ctx.Err() != nil || s.ctx.Err() != nil }
	for !ended() {
		err := f.step(ctx)
		var sendErr sendError
		if errors.As(err, &sendErr) {
			return sendErr.err
		}
		if err != nil && !ended() {
			f.sess.check(err)
			if err := f.outage(err); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
			case <-time.After(probeInterval):
			}
		}
	}
	return nil
}

// follower is the state of one follow call.
type follower struct {
	sess         *session
	prefix, what string
	set          func(map[string][]byte, int64) error
	down         func(string) error

	kvs map[string][]byte
	rev int64 // the revision kvs is at; 0 before the first read
	// unavailable is the reason of the outage being reported, "" when
	// etcd answers.
	unavailable string
}

// sendError is a failure of set or down: the host is gone.
type sendError struct{ err error }

func (e sendError) Error() string { return e.err.Error() }

// step reads the prefix if it has not (or must again), then watches it
// until ctx ends (nil), etcd stops answering (its error), or the watch
// must start over (nil).
func (f *follower) step(ctx context.Context) error {
	cli, err := f.sess.client()
	if err != nil {
		return err
	}
	if err := f.sess.probe(ctx, cli, f.prefix); err != nil {
		return err
	}
	if f.rev == 0 {
		rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), readTimeout)
		resp, err := cli.Get(rctx, f.prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			return err
		}
		f.kvs = make(map[string][]byte, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			f.kvs[string(kv.Key)] = kv.Value
		}
		f.rev = resp.Header.Revision
		f.sess.log.Info("read "+f.what, "prefix", f.prefix, "keys", len(f.kvs), "revision", f.rev)
		if err := f.send(); err != nil {
			return err
		}
	} else if f.unavailable != "" {
		f.sess.log.Info("etcd answers again: resuming the watch", "prefix", f.prefix, "from_revision", f.rev+1)
		if err := f.send(); err != nil {
			return err
		}
	}

	// WithRequireLeader: a member cut off from its leader ends the watch
	// (ErrNoLeader) rather than holding it open with nothing coming. The
	// probes run beside the watch, which waits silently, even to be
	// created, while etcd is unreachable; a failed one ends the watch with
	// its error.
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	var probes sync.WaitGroup
	defer probes.Wait()
	defer cancel(nil)
	probes.Add(1)
	go func() {
		defer probes.Done()
		tick := time.NewTicker(probeInterval)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
				if err := f.sess.probe(wctx, cli, f.prefix); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	wc := cli.Watch(wctx, f.prefix, clientv3.WithPrefix(), clientv3.WithRev(f.rev+1))
	for {
		select {
		case <-ctx.Done():
			return nil
		case r, ok := <-wc:
			if ctx.Err() != nil {
				return nil
			}
			if wctx.Err() != nil {
				return context.Cause(wctx)
			}
			if !ok {
				return errors.New("the watch ended")
			}
			if r.CompactRevision != 0 {
				f.sess.log.Warn("etcd compacted the revisions the watch resumed from: reading the prefix anew",
					"prefix", f.prefix, "from_revision", f.rev+1, "compacted_to", r.CompactRevision)
				f.rev = 0
				return nil
			}
			if err := r.Err(); err != nil {
				return err
			}
			if len(r.Events) == 0 {
				continue
			}
			for _, ev := range r.Events {
				if ev.Type == mvccpb.DELETE {
					delete(f.kvs, string(ev.Kv.Key))
				} else {
					f.kvs[string(ev.Kv.Key)] = ev.Kv.Value
				}
			}
			// The last event's revision, not the header's: etcd sends a
			// backlog of over 1,000 revisions in several responses, each
			// with the current revision in its header, and the copy is at
			// the header's revision only after the last one.
			f.rev = r.Events[len(r.Events)-1].Kv.ModRevision
			if err := f.send(); err != nil {
				return err
			}
		}
	}
}

// send calls set with the copy; a successful send ends the outage.
func (f *follower) send() error {
	if err := f.set(f.kvs, f.rev); err != nil {
		return sendError{err}
	}
	f.unavailable = ""
	return nil
}

// outage reports that etcd does not answer: down and a warning once per
// outage.
func (f *follower) outage(err error) error {
	if f.unavailable != "" {
		f.sess.log.Debug("etcd still does not answer", "prefix", f.prefix, "error", errorText(err))
		return nil
	}
	f.unavailable = "etcd unreachable: " + errorText(err)
	f.sess.log.Warn("etcd does not answer: watching again when it does", "prefix", f.prefix, "endpoints", f.sess.set.Endpoints, "error", errorText(err))
	if err := f.down(f.unavailable); err != nil {
		return err
	}
	return nil
}

// probe checks that etcd answers a read that needs the cluster's leader,
// within dial_timeout. The key read is prefix itself, which the user the
// plugin authenticates as may read.
func (s *session) probe(ctx context.Context, cli *clientv3.Client, prefix string) error {
	pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), s.set.DialTimeout)
	defer cancel()
	_, err := cli.Get(pctx, prefix, clientv3.WithCountOnly())
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return errors.New("no answer within dial_timeout (" + s.set.DialTimeout.String() + ")")
	}
	return err
}

// errorText is err's message, with the client's gRPC wrapping turned into
// etcd's own words where it has them.
func errorText(err error) string {
	if e := rpctypes.Error(err); e != nil {
		return e.Error()
	}
	return err.Error()
}
