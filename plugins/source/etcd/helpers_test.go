package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/xlbproject/xlb/internal/etcdtest"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/plugins/sdk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// waitTimeout bounds each wait for an update: generous, so that a loaded
// machine slows a test down without failing it. Outages are detected
// within probeInterval + dial_timeout.
const waitTimeout = 30 * time.Second

// testDialTimeout is the tests' dial_timeout: an outage is reported within
// about 3 s, and a loaded machine still answers a probe on loopback in
// time.
const testDialTimeout = "2s"

// settingsJSON is a block for endpoints with attribute overrides (JSON
// values; "" removes one).
func settingsJSON(endpoints []string, overrides ...string) []byte {
	m := map[string]any{"endpoints": endpoints, "prefix": "/xlb/services/", "dial_timeout": testDialTimeout}
	for i := 0; i+1 < len(overrides); i += 2 {
		if overrides[i+1] == "" {
			delete(m, overrides[i])
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(overrides[i+1]), &v); err != nil {
			panic(err)
		}
		m[overrides[i]] = v
	}
	js, _ := json.Marshal(m)
	return js
}

// newTestSource is a configured source whose log the test reads.
func newTestSource(t *testing.T, config []byte) (*source, *testenv.Buffer) {
	t.Helper()
	var buf testenv.Buffer
	src := newSource(hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Debug}))
	if err := src.Configure(config); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() {
		src.mu.Lock()
		sess := src.sess
		src.mu.Unlock()
		sess.close()
		if t.Failed() {
			t.Logf("plugin log:\n%s", buf.String())
		}
	})
	return src, &buf
}

func opCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func del(t *testing.T, c *clientv3.Client, k string) int64 {
	t.Helper()
	r, err := c.Delete(opCtx(t), k)
	if err != nil {
		t.Fatalf("delete %s: %v", k, err)
	}
	return r.Header.Revision
}

// stream runs a Watch-like call in the background and hands its updates to
// the test; the call ends with the test (or stop).
type stream[U any] struct {
	ch   chan U
	stop context.CancelFunc
	err  chan error
}

func startStream[U any](t *testing.T, call func(context.Context, func(U) error) error) *stream[U] {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream[U]{ch: make(chan U, 100), stop: cancel, err: make(chan error, 1)}
	go func() {
		s.err <- call(ctx, func(u U) error {
			select {
			case s.ch <- u:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.err:
		case <-time.After(waitTimeout):
			t.Error("the call did not end when its context did")
		}
	})
	return s
}

func (s *stream[U]) next(t *testing.T) U {
	t.Helper()
	select {
	case u := <-s.ch:
		return u
	case err := <-s.err:
		t.Fatalf("the call ended: %v", err)
	case <-time.After(waitTimeout):
		t.Fatalf("no update within %v", waitTimeout)
	}
	var zero U
	return zero
}

// quiet fails if an update arrives within d: a replayed or repeated one.
func (s *stream[U]) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case u := <-s.ch:
		t.Fatalf("unexpected update %+v", u)
	case <-time.After(d):
	}
}

// show is an update as the tests compare it: revision, then each document
// as name(format)=content, or the outage.
func show(u sdk.ConfigUpdate) string {
	if u.Unavailable != "" {
		return "unavailable"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "@%s", u.Revision)
	for _, d := range u.Documents {
		fmt.Fprintf(&b, " %s(%s)=%s", d.Name, d.Format, d.Content)
	}
	return b.String()
}

func want(t *testing.T, got sdk.ConfigUpdate, rev int64, docs string) {
	t.Helper()
	w := fmt.Sprintf("@%d", rev)
	if docs != "" {
		w += " " + docs
	}
	if g := show(got); g != w {
		t.Fatalf("update:\n got %s\nwant %s", g, w)
	}
}

func startEtcd(t *testing.T) (*etcdtest.Server, *clientv3.Client) {
	s := etcdtest.Start(t)
	return s, s.Client(t)
}
