package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// adminOptions are the admin API's flags.
type adminOptions struct {
	socket, group, listen string
	tls                   admin.TLSFiles
}

// adminFlags registers the admin API's flags on fs.
func adminFlags(fs *flag.FlagSet) *adminOptions {
	o := &adminOptions{}
	fs.StringVar(&o.socket, "admin-socket", admin.DefaultSocket, "the admin API's unix socket (docs/admin.md); \"\" serves none")
	fs.StringVar(&o.group, "admin-group", "", "the group that may use the admin socket (mode 0660); default: root's group")
	fs.StringVar(&o.listen, "admin-listen", "", "also serve the admin API and status page on this TCP HOST:PORT: loopback only, unless with -admin-tls-*")
	fs.StringVar(&o.tls.Cert, "admin-tls-cert", "", "the -admin-listen TLS certificate (PEM); with -admin-tls-key and -admin-tls-client-ca")
	fs.StringVar(&o.tls.Key, "admin-tls-key", "", "the -admin-tls-cert's private key (PEM)")
	fs.StringVar(&o.tls.ClientCA, "admin-tls-client-ca", "", "the CAs (PEM) whose client certificates -admin-listen requires")
	return o
}

// startAdmin serves the admin API of d and rt on the socket and the TCP
// address of o until the returned stop is called. No socket: none. The
// default socket may be refused for want of permission (xlbd run as a
// user, offline): xlbd then runs without it and says so; a socket asked
// for, and a TCP address, must work.
func startAdmin(d *daemon, rt *pipeline.Runtime, o *adminOptions) (stop func(), err error) {
	if o.listen == "" && (o.tls != admin.TLSFiles{}) {
		return nil, errors.New("-admin-tls-cert, -admin-tls-key and -admin-tls-client-ca are for -admin-listen, which is not given")
	}
	type listener struct {
		l    net.Listener
		attr []any
	}
	var ls []listener
	if o.socket != "" {
		l, err := admin.Listen(o.socket, o.group)
		switch {
		case errors.Is(err, fs.ErrPermission) && o.socket == admin.DefaultSocket:
			d.log.Warn("no admin API: no permission for the default socket; run as root or pass -admin-socket", "socket", o.socket, "err", err)
		case err != nil:
			return nil, fmt.Errorf("admin socket %s: %w; pass -admin-socket \"\" to run without", o.socket, err)
		default:
			ls = append(ls, listener{l, []any{"socket", o.socket}})
		}
	}
	if o.listen != "" {
		l, err := admin.ListenTCP(o.listen, o.tls)
		if err != nil {
			for _, x := range ls {
				x.l.Close()
			}
			return nil, fmt.Errorf("admin API on %s: %w", o.listen, err)
		}
		ls = append(ls, listener{l, []any{"addr", l.Addr().String(), "tls", o.tls.Cert != ""}})
	}
	h := admin.Handler(&adminSource{d: d, rt: rt, started: time.Now()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, x := range ls {
		wg.Go(func() {
			if err := admin.Serve(ctx, x.l, h, d.log.With(x.attr...)); err != nil && ctx.Err() == nil {
				d.log.Error("admin API stopped", append(x.attr, "err", err)...)
			}
		})
		d.log.Info("admin API listening", x.attr...)
	}
	return func() { cancel(); wg.Wait() }, nil
}

// adminSource is the daemon as the admin API sees it.
type adminSource struct {
	d       *daemon
	rt      *pipeline.Runtime
	started time.Time
}

func (a *adminSource) Status() admin.Status {
	info, _ := debug.ReadBuildInfo()
	var v bytes.Buffer
	writeVersion(&v, info)
	return admin.Status{Version: strings.Split(strings.TrimSpace(v.String()), "\n"), StartedAt: a.started,
		UptimeSeconds: time.Since(a.started).Seconds(), Workers: len(a.rt.Workers()), DaemonStatus: a.d.Status()}
}

func (a *adminSource) Snapshot() *snapshot.Snapshot   { return a.d.s.ctl.Snapshot() }
func (a *adminSource) Stats() []pipeline.ElementStats { return a.rt.Stats() }
func (a *adminSource) Graph() *pipeline.Graph         { return a.rt.Graph() }

func (a *adminSource) Pools() map[string]string {
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	return a.d.pools
}

func (a *adminSource) Health() map[string]bool {
	out := map[string]bool{}
	if a.d.s.sched != nil {
		for _, b := range a.d.s.sched.Stats().Backends {
			out[b.Name] = b.Healthy
		}
	}
	return out
}

func (a *adminSource) Overrides() map[string]admin.Override {
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	return maps.Clone(a.d.s.overrides)
}

func (a *adminSource) Plugins() []host.Status {
	if a.d.s.set == nil {
		return nil
	}
	return a.d.s.set.Statuses()
}

func (a *adminSource) Routes() []host.AnnouncerStatus {
	if a.d.s.an == nil {
		return nil
	}
	return a.d.s.an.Statuses()
}

func (a *adminSource) Reload(ctx context.Context) (admin.Result, error) {
	return a.d.request(ctx, adminRequest{reload: true})
}

func (a *adminSource) Override(ctx context.Context, backend string, set func(*admin.Override)) (admin.Result, error) {
	return a.d.request(ctx, adminRequest{backend: backend, set: set})
}

// adminRequest is a write of the admin API, which the apply loop serves
// as it serves SIGHUP and the sources' updates: one change at a time.
type adminRequest struct {
	// do, when set, is the whole request (a plan), run in the loop.
	do      func() adminReply
	reload  bool
	backend string
	set     func(*admin.Override)
	reply   chan adminReply
}

type adminReply struct {
	res admin.Result
	err error
}

var errStopping = errors.New("xlbd is stopping: no change is applied any more")

// request hands r to the apply loop and waits for its result.
func (d *daemon) request(ctx context.Context, r adminRequest) (admin.Result, error) {
	r.reply = make(chan adminReply, 1)
	select {
	case d.requests <- r:
	case <-d.stopped:
		return admin.Result{}, errStopping
	case <-ctx.Done():
		return admin.Result{}, ctx.Err()
	}
	select {
	case rep := <-r.reply:
		return rep.res, rep.err
	case <-ctx.Done():
		// The loop finishes the change anyway; the caller sees it in
		// the status.
		return admin.Result{}, ctx.Err()
	}
}

// serve applies r in the apply loop: a reload as SIGHUP does, an override
// as a transaction of the configuration with it, which a rejection undoes.
func (d *daemon) serve(r adminRequest) adminReply {
	if r.do != nil {
		return r.do()
	}
	if r.reload {
		if d.s.src != nil {
			d.s.src.Resync()
		}
		_, err := d.attempt(true)
		return adminReply{res: d.result(err)}
	}
	d.mu.Lock()
	known := d.backends[r.backend]
	old := d.s.overrides
	d.mu.Unlock()
	if !known {
		return adminReply{err: &admin.InputError{Msg: fmt.Sprintf("unknown backend %q: no pool of the running configuration declares it", r.backend)}}
	}
	o := old[r.backend]
	r.set(&o)
	ov := maps.Clone(old)
	if ov == nil {
		ov = map[string]admin.Override{}
	}
	ov[r.backend] = o
	d.mu.Lock()
	d.s.overrides = ov
	d.mu.Unlock()
	_, err := d.attempt(true)
	if err != nil {
		d.mu.Lock()
		d.s.overrides = old
		d.mu.Unlock()
		return adminReply{res: d.result(err), err: &admin.InputError{Msg: "the configuration with this change was rejected; nothing changed"}}
	}
	d.log.Info("backend override applied", "backend", r.backend, "drain", fmtPtr(o.Drain), "weight", fmtPtr(o.Weight),
		"generation", d.s.ctl.Snapshot().Generation)
	return adminReply{res: d.result(nil)}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// result is an attempt's outcome as the API reports it.
func (d *daemon) result(err error) admin.Result {
	st := d.Status()
	res := admin.Result{Applied: err == nil, Generation: st.Generation}
	if err != nil && st.Rejected != nil {
		res.Diagnostics = st.Rejected.Diagnostics
	}
	return res
}

// withOverrides applies the operator's overrides to cfg, copying the pools
// it changes: their backends may be shared with the running configuration
// and hcl.Cache.
func (s *services) withOverrides(cfg *control.Config) {
	if len(s.overrides) == 0 {
		return
	}
	pools := slices.Clone(cfg.Pools)
	for i := range pools {
		p := &pools[i]
		copied := false
		for j := range p.Backends {
			o, ok := s.overrides[p.Backends[j].Name]
			if !ok {
				continue
			}
			if !copied {
				p.Backends, copied = slices.Clone(p.Backends), true
			}
			b := &p.Backends[j]
			if o.Drain != nil {
				b.Drain = *o.Drain
			}
			if o.Weight != nil {
				b.Weight = *o.Weight
			}
		}
	}
	cfg.Pools = pools
}

// appliedConfig records what the API needs of the configuration cfg just
// applied: each VIP's pool and the backends it declares. The overrides of
// backends it no longer declares are forgotten.
func (d *daemon) appliedConfig(cfg *control.Config) {
	pools, backends := map[string]string{}, map[string]bool{}
	for _, v := range cfg.VIPs {
		pools[v.Name] = v.Pool
	}
	for _, p := range cfg.Pools {
		for _, b := range p.Backends {
			backends[b.Name] = true
		}
	}
	var gone []string
	for name := range d.s.overrides {
		if !backends[name] {
			gone = append(gone, name)
		}
	}
	d.mu.Lock()
	d.pools, d.backends, d.service = pools, backends, cfg
	if len(gone) > 0 {
		d.s.overrides = maps.Clone(d.s.overrides)
		for _, name := range gone {
			delete(d.s.overrides, name)
		}
	}
	d.mu.Unlock()
	for _, name := range gone {
		d.log.Warn("backend override forgotten: the configuration no longer declares the backend", "backend", name)
	}
}
