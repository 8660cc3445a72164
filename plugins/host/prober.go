package host

import (
	"context"
	"fmt"
	"time"

	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Prober adapts a health-checker plugin to control/health: one Probe is
// one CheckBatch RPC.
//
// While the plugin is not running (restarting, failed, stopped), or when
// the RPC fails (the process died mid-call), Probe returns an error: the
// scheduler then holds every target's last known health, so a plugin
// crash does not flap its backends. A target the plugin gives no verdict
// (StatusUnknown) is held the same way, alone.
func (p *Plugin) Prober() health.Prober { return prober{p} }

type prober struct{ p *Plugin }

func (pr prober) Probe(ctx context.Context, targets []health.Target) ([]health.Result, error) {
	hc, err := pr.p.HealthChecker()
	if err != nil {
		return nil, err
	}
	st := make([]sdk.Target, len(targets))
	timeout := batchTimeout(targets)
	for i, t := range targets {
		st[i] = sdk.Target{ID: uint64(i), Name: t.Backend, Address: t.Addr.Addr().Unmap().String(), Port: t.Addr.Port()}
	}
	var params []byte
	if len(targets) > 0 {
		params = targets[0].Params // one health check per batch
	}
	rs, err := hc.CheckBatch(ctx, params, st, timeout)
	if err != nil {
		return nil, fmt.Errorf("plugin %q: check: %w", pr.p.spec.Name, err)
	}
	out := make([]health.Result, len(targets))
	for i, t := range targets {
		r := rs[i] // CheckBatch returns one result per target, in order
		out[i] = health.Result{Backend: t.Backend, OK: r.Status == sdk.StatusPass,
			Unknown: r.Status == sdk.StatusUnknown, Err: r.Message, Latency: r.Latency}
	}
	return out, nil
}

// batchTimeout is the batch's per-probe timeout: the scheduler gives
// every target of a batch its check's timeout; take the largest to be safe.
func batchTimeout(targets []health.Target) (d time.Duration) {
	for _, t := range targets {
		d = max(d, t.Timeout)
	}
	return d
}

var _ health.Prober = prober{}
