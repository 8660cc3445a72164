package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/metrics"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// metricsAddrFlag registers -metrics-addr on fs.
func metricsAddrFlag(fs *flag.FlagSet) *string {
	return fs.String("metrics-addr", "127.0.0.1:9810", `serve Prometheus metrics at http://ADDR/metrics ("" turns them off)`)
}

// metricsServer serves a daemon's metrics (see package metrics) from its
// start, before the pipeline runs: the first table builds are counted.
type metricsServer struct {
	rt   atomic.Pointer[pipeline.Runtime] // nil until the pipeline starts
	srv  *http.Server                     // nil: not serving
	addr net.Addr
}

// startMetrics serves s's and d's metrics at addr. An address that cannot
// be listened on is logged and leaves metrics off: the daemon forwards
// without them rather than not at all.
func startMetrics(addr string, log *slog.Logger, s *services, d *daemon) *metricsServer {
	m := &metricsServer{}
	c := metrics.New(m.sources(s, d))
	s.ctl.OnBuild(c.ObserveBuild)
	if addr == "" {
		return m
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error(`metrics off: cannot listen; free the address or choose another with -metrics-addr ("" turns metrics off)`, "addr", addr, "err", err)
		return m
	}
	m.addr = ln.Addr()
	m.srv = &http.Server{Handler: metrics.Handler(c), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+m.addr.String()+"/metrics")
	return m
}

// stop stops serving and waits for the scrapes in progress, for at most a
// second; it may be called again.
func (m *metricsServer) stop() {
	if m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if m.srv.Shutdown(ctx) != nil {
		_ = m.srv.Close()
	}
}

// sources reads what exists at each scrape: the pipeline once it runs, the
// health checks and plugins when there are any.
func (m *metricsServer) sources(s *services, d *daemon) metrics.Sources {
	src := metrics.Sources{
		Elements: func() []pipeline.ElementStats {
			if rt := m.rt.Load(); rt != nil {
				return rt.Stats()
			}
			return nil
		},
		Workers: func(elems []pipeline.ElementStats) []metrics.WorkerMetric {
			if rt := m.rt.Load(); rt != nil {
				return metrics.RuntimeWorkers(rt, elems)
			}
			return nil
		},
		Snapshot: s.ctl.Snapshot,
		Reloads:  func() (uint64, uint64) { return d.reloadsOK.Load(), d.reloadsFailed.Load() },
	}
	if s.sched != nil {
		src.Health = func() health.Stats { return s.sched.Stats() }
	}
	if s.set != nil {
		src.Plugins = func() []host.Status { return s.set.Statuses() }
	}
	if s.an != nil {
		src.Announced = s.an.Statuses
	}
	return src
}
