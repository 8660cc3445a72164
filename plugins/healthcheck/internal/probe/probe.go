// Package probe holds what the built-in health checkers share: a bounded
// worker pool that probes one batch of targets (the batch-per-tick model of
// HAProxy and keepalived checks, with a fixed number of probes in flight)
// and lenient readers for the plugin's JSON configuration.
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// DefaultTimeout bounds a probe when the batch's context has no deadline
// (the host always sends one; a direct caller may not).
const DefaultTimeout = time.Second

// DefaultConcurrency is how many probes a checker runs at once by default:
// enough for 10,000 live targets per 1 s tick on loopback (a connect takes
// tens of microseconds), while capping sockets and goroutines.
const DefaultConcurrency = 1000

// NotProbed is the message of a target left StatusUnknown because the
// batch's deadline passed before its turn.
const NotProbed = "not probed: the batch's deadline passed before its turn"

// Run probes targets on at most workers goroutines and returns one result
// per target, in order, with ID and Latency filled in. A target whose turn
// comes after ctx has ended is not probed and gets StatusUnknown: the host
// holds its last health rather than failing a backend nobody looked at.
func Run(ctx context.Context, targets []sdk.Target, workers int, probe func(context.Context, sdk.Target) sdk.Result) []sdk.Result {
	res := make([]sdk.Result, len(targets))
	if len(targets) == 0 {
		return res
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	workers = max(1, min(workers, len(targets)))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				t := targets[i]
				// ctx.Err() lags the deadline by a timer's latency; a dial
				// started in that gap would fail at once, unprobed.
				if ctx.Err() != nil || !time.Now().Before(deadline) {
					res[i] = sdk.Result{ID: t.ID, Status: sdk.StatusUnknown, Message: NotProbed}
					continue
				}
				start := time.Now()
				r := probe(ctx, t)
				r.ID, r.Latency = t.ID, time.Since(start)
				res[i] = r
			}
		})
	}
	wg.Wait()
	return res
}

// Fail is a failed result with err's text.
func Fail(err error) sdk.Result {
	return sdk.Result{Status: sdk.StatusFail, Message: err.Error()}
}

// Decode reads config into v (a struct of json.RawMessage fields, one per
// attribute) with sdk.DecodeConfig, turning an unknown attribute into a
// *sdk.ConfigError that names it.
func Decode(config []byte, v any) error {
	err := sdk.DecodeConfig(config, v)
	var ce *sdk.ConfigError
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	const marker = `unknown field "`
	if i := strings.Index(ce.Message, marker); i >= 0 {
		name := ce.Message[i+len(marker):]
		if j := strings.IndexByte(name, '"'); j >= 0 {
			return &sdk.ConfigError{Attribute: name[:j], Message: "unknown attribute"}
		}
	}
	return err
}

// The readers below leave *dst alone when raw is absent or null, and accept
// a value either as its JSON type or as a string: xlbd converts values to
// the types the checker's schema declares, but a host that does not (a
// direct caller, another host) may send numbers and bools as text.

func unset(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// scalar is raw as text: a JSON string unquoted, anything else verbatim.
func scalar(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	if len(raw) > 0 && raw[0] != '[' && raw[0] != '{' {
		return string(raw), true
	}
	return "", false
}

// String reads a string attribute.
func String(attr string, raw json.RawMessage, dst *string) error {
	if unset(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &sdk.ConfigError{Attribute: attr, Message: "must be a string"}
	}
	return nil
}

// Int reads an integer attribute in [lo, hi].
func Int(attr string, raw json.RawMessage, dst *int, lo, hi int) error {
	if unset(raw) {
		return nil
	}
	s, ok := scalar(raw)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if !ok || err != nil {
		return &sdk.ConfigError{Attribute: attr, Message: "must be an integer"}
	}
	if n < lo || n > hi {
		return &sdk.ConfigError{Attribute: attr, Message: "must be between " + strconv.Itoa(lo) + " and " + strconv.Itoa(hi)}
	}
	*dst = n
	return nil
}

// Bool reads a bool attribute.
func Bool(attr string, raw json.RawMessage, dst *bool) error {
	if unset(raw) {
		return nil
	}
	s, ok := scalar(raw)
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if !ok || err != nil {
		return &sdk.ConfigError{Attribute: attr, Message: "must be true or false"}
	}
	*dst = b
	return nil
}

// Strings reads a list of strings, also given as one string or number; list
// elements may be numbers too. ok is false when raw is absent.
func Strings(attr string, raw json.RawMessage) (v []string, ok bool, err error) {
	if unset(raw) {
		return nil, false, nil
	}
	if s, isScalar := scalar(raw); isScalar {
		return []string{s}, true, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, true, &sdk.ConfigError{Attribute: attr, Message: "must be a string or a list of strings"}
	}
	for _, e := range list {
		s, isScalar := scalar(e)
		if !isScalar {
			return nil, true, &sdk.ConfigError{Attribute: attr, Message: "must be a string or a list of strings"}
		}
		v = append(v, s)
	}
	return v, true, nil
}

// Concurrency is a built-in checker's plugin-block configuration: the most
// probes in flight at once. Embedded in a checker, it is that checker's
// sdk.Configurer; Configure and Load may be called concurrently.
type Concurrency struct {
	n atomic.Int64 // 0: DefaultConcurrency
}

// ConcurrencyAttribute describes the attribute in a checker's Info.Schema.
var ConcurrencyAttribute = sdk.Attribute{Name: "concurrency", Type: "number",
	Description: "most probes in flight at once (default " + strconv.Itoa(DefaultConcurrency) + ")"}

// Load returns the configured concurrency.
func (c *Concurrency) Load() int {
	if n := c.n.Load(); n > 0 {
		return int(n)
	}
	return DefaultConcurrency
}

// Configure reads the plugin block ({"concurrency": N}); a bad or unknown
// attribute is a *sdk.ConfigError and leaves the old value.
func (c *Concurrency) Configure(config []byte) error {
	var raw struct {
		Concurrency json.RawMessage `json:"concurrency"`
	}
	if err := Decode(config, &raw); err != nil {
		return err
	}
	n := c.Load()
	if err := Int("concurrency", raw.Concurrency, &n, 1, 100000); err != nil {
		return err
	}
	c.n.Store(int64(n))
	return nil
}
