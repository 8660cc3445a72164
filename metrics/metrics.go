// Package metrics exposes a running xlbd to Prometheus. Nothing is counted
// twice: at every scrape the Collector reads what the daemon already keeps
// (the pipeline's per-worker counters, summed by pipeline.Runtime.Stats;
// the controller's snapshot; the health scheduler's state; the plugins'
// statuses) and turns it into metrics, so a scrape costs the data plane a
// few atomic loads of counters each worker publishes once per batch.
//
// Element metrics keep the names and labels their elements give them
// (xlb_encap_backend_packets_total{vip,backend}, xlb_drop_packets_total
// {element,reason}, ...) with an element label added, so that two
// elements of one type stay apart. docs/metrics.md lists every metric.
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
)

// Sources are what a Collector reads at each scrape. A nil field is a
// part the daemon does not have (no plugins, the pipeline not started
// yet): its metrics are left out.
type Sources struct {
	// Elements returns every element's counters summed over workers
	// (pipeline.Runtime.Stats).
	Elements func() []pipeline.ElementStats
	// Workers returns the metrics of the elements (those Elements just
	// returned) that are exposed per worker (ConnTrack), one worker at a
	// time (see RuntimeWorkers); those elements' summed metrics are then
	// left out.
	Workers   func([]pipeline.ElementStats) []WorkerMetric
	Snapshot  func() *snapshot.Snapshot
	Health    func() health.Stats
	Plugins   func() []host.Status
	Announced func() []host.AnnouncerStatus
	// Reloads returns how many reloads were applied and how many were
	// rejected.
	Reloads func() (ok, failed uint64)
}

// perWorkerTypes are the element types whose metrics are exposed per
// worker (with a worker label) instead of summed: each worker has its own
// ConnTrack table, and one worker's full table is what an operator needs
// to see.
var perWorkerTypes = map[string]bool{"ConnTrack": true}

// WorkerMetric is one metric of one element of one worker.
type WorkerMetric struct {
	Worker  int
	Element string
	Metric  pipeline.Metric
}

// RuntimeWorkers returns the per-worker metrics of rt's elements that are
// exposed per worker (ConnTrack), for Sources.Workers.
func RuntimeWorkers(rt *pipeline.Runtime, elements []pipeline.ElementStats) []WorkerMetric {
	var out []WorkerMetric
	for w, inst := range rt.Workers() {
		for _, e := range elements {
			if !perWorkerTypes[e.Type] {
				continue
			}
			if r, ok := inst.Element(e.Name).(pipeline.StatsReporter); ok {
				r.Stats(func(m pipeline.Metric) { out = append(out, WorkerMetric{w, e.Name, m}) })
			}
		}
	}
	return out
}

// Collector is a prometheus.Collector over Sources, plus the table
// builds it is told of (ObserveBuild).
type Collector struct {
	src Sources

	tables prometheus.Counter
	builds prometheus.Histogram

	mu    sync.Mutex
	descs map[string]*prometheus.Desc // by name and label names
}

// New returns a Collector reading src.
func New(src Sources) *Collector {
	return &Collector{
		src: src,
		tables: prometheus.NewCounter(prometheus.CounterOpts{Name: "xlb_table_builds_total",
			Help: "Maglev tables built (a reload or health change builds only the tables whose inputs changed)."}),
		builds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xlb_table_build_duration_seconds",
			Help:    "Time to build the Maglev tables one snapshot needed, all of them together.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		descs: map[string]*prometheus.Desc{},
	}
}

// ObserveBuild records tables built in took; it has control.Controller's
// OnBuild signature.
func (c *Collector) ObserveBuild(tables int, took time.Duration) {
	c.tables.Add(float64(tables))
	c.builds.Observe(took.Seconds())
}

// Describe sends nothing: the element metrics are known only once the
// graph runs, so the Collector is unchecked.
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every source and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.tables
	ch <- c.builds
	s := c.src
	var elems []pipeline.ElementStats
	if s.Elements != nil {
		elems = s.Elements()
		c.elements(ch, elems)
	}
	if s.Workers != nil {
		for _, w := range s.Workers(elems) {
			labels := append([]pipeline.Label{{Name: "element", Value: w.Element}, {Name: "worker", Value: strconv.Itoa(w.Worker)}}, w.Metric.Labels...)
			c.send(ch, w.Metric.Name, w.Metric.Help, w.Metric.Gauge, float64(w.Metric.Value), labels)
		}
	}
	if s.Snapshot != nil {
		c.snapshot(ch, s.Snapshot())
	}
	if s.Health != nil {
		c.health(ch, s.Health())
	}
	if s.Plugins != nil {
		c.plugins(ch, s.Plugins())
	}
	if s.Announced != nil {
		for _, a := range s.Announced() {
			l := []pipeline.Label{{Name: "announcer", Value: a.Name}}
			c.send(ch, "xlb_announced_routes", "Routes the announcer holds announced now.", true, float64(a.Routes), l)
			c.send(ch, "xlb_announcer_in_sync", "1 when the announcer holds the routes this node wants announced.", true, b2f(a.InSync), l)
			for _, x := range a.Sessions {
				pl := append(l[:1:1], pipeline.Label{Name: "peer", Value: x.Peer})
				c.send(ch, "xlb_announcer_session_up", "1 when the announcer's session with a peer (a BGP neighbor) carries routes (BGP: established).", true, b2f(x.Up), pl)
				c.send(ch, "xlb_announcer_session_state", "1 for the state the announcer's session with a peer is in (BGP: idle, connect, active, opensent, openconfirm, established).", true, 1,
					append(pl[:2:2], pipeline.Label{Name: "state", Value: x.State}))
				c.send(ch, "xlb_announcer_session_prefixes", "Prefixes the announcer announces to a peer now.", true, float64(x.Prefixes), pl)
			}
		}
	}
	if s.Reloads != nil {
		ok, failed := s.Reloads()
		help := "Configuration reloads (SIGHUP, a config source's update) applied or rejected."
		c.send(ch, "xlb_config_reloads_total", help, false, float64(ok), []pipeline.Label{{Name: "result", Value: "ok"}})
		c.send(ch, "xlb_config_reloads_total", help, false, float64(failed), []pipeline.Label{{Name: "result", Value: "failed"}})
	}
}

func (c *Collector) elements(ch chan<- prometheus.Metric, stats []pipeline.ElementStats) {
	const portHelp = "Packets that passed an element's port."
	for _, e := range stats {
		el := pipeline.Label{Name: "element", Value: e.Name}
		for _, p := range e.In {
			c.send(ch, "xlb_element_packets_total", portHelp, false, float64(p.Packets),
				[]pipeline.Label{el, {Name: "direction", Value: "in"}, {Name: "port", Value: p.Port}})
		}
		for _, p := range e.Out {
			c.send(ch, "xlb_element_packets_total", portHelp, false, float64(p.Packets),
				[]pipeline.Label{el, {Name: "direction", Value: "out"}, {Name: "port", Value: p.Port}})
		}
		c.send(ch, "xlb_element_consumed_packets_total", "Packets that left the graph at an element (sent, written).",
			false, float64(e.Consumed), []pipeline.Label{el})
		for _, m := range e.Metrics {
			labels := m.Labels
			if m.Name != pipeline.DropMetric {
				if perWorkerTypes[e.Type] && c.src.Workers != nil {
					continue
				}
				labels = append([]pipeline.Label{el}, m.Labels...)
			}
			c.send(ch, m.Name, m.Help, m.Gauge, float64(m.Value), labels)
		}
	}
}

func (c *Collector) snapshot(ch chan<- prometheus.Metric, snap *snapshot.Snapshot) {
	if snap == nil {
		return
	}
	c.send(ch, "xlb_config_generation", "Generation of the snapshot the data plane runs (it grows with every reload and health change).",
		true, float64(snap.Generation), nil)
	c.send(ch, "xlb_vips", "VIPs in the running configuration.", true, float64(len(snap.VIPs)), nil)
	for _, r := range snap.Reals.All() {
		if r.Epoch == 0 || int(r.VIP) >= len(snap.VIPs) {
			continue
		}
		l := []pipeline.Label{{Name: "vip", Value: snap.VIPs[r.VIP].Name}, {Name: "backend", Value: r.Backend}}
		c.send(ch, "xlb_backend_weight", "A backend's weight in a VIP's Maglev table.", true, float64(r.Weight), l)
		c.send(ch, "xlb_backend_state", "A backend's state in a VIP (1 for the state it is in).", true, 1,
			append(l, pipeline.Label{Name: "state", Value: r.State.String()}))
	}
}

func (c *Collector) health(ch chan<- prometheus.Metric, st health.Stats) {
	for _, b := range st.Backends {
		l := []pipeline.Label{{Name: "backend", Value: b.Name}}
		c.send(ch, "xlb_backend_healthy", "1 when health checking finds the backend up (as given to the data plane).", true, b2f(b.Healthy), l)
		c.send(ch, "xlb_health_transitions_total", "Times a backend's checked health changed.", false, float64(b.Transitions), l)
		for _, m := range b.Methods {
			ml := append(l[:1:1], pipeline.Label{Name: "method", Value: m.Method})
			c.send(ch, "xlb_health_check_up", "1 when a backend's check by one method passes.", true, b2f(m.Up), ml)
			c.send(ch, "xlb_health_probes_total", "Probes of a backend by one method.", false, float64(m.Probes), ml)
			c.latencies(ch, m.Latencies, ml)
		}
	}
}

// latencyBounds are health.LatencyBuckets in seconds.
var latencyBounds = func() []float64 {
	b := make([]float64, len(health.LatencyBuckets))
	for i, d := range health.LatencyBuckets {
		b[i] = d.Seconds()
	}
	return b
}()

// latencies sends one check's latency histogram.
func (c *Collector) latencies(ch chan<- prometheus.Metric, l health.Latencies, labels []pipeline.Label) {
	d, values := c.desc("xlb_health_check_latency_seconds", "How long a backend's probes by one method took (those without a verdict left out).", labels)
	buckets := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, b := range latencyBounds {
		n += l.Counts[i]
		buckets[b] = n
	}
	n += l.Counts[len(latencyBounds)]
	ch <- prometheus.MustNewConstHistogram(d, n, l.Sum.Seconds(), buckets, values...)
}

// pluginStates are every state a plugin can be in, for the enum metric.
var pluginStates = []host.State{host.StateStopped, host.StateStarting, host.StateRunning, host.StateRestarting, host.StateFailed}

func (c *Collector) plugins(ch chan<- prometheus.Metric, ps []host.Status) {
	for _, p := range ps {
		l := []pipeline.Label{{Name: "plugin", Value: p.Name}}
		c.send(ch, "xlb_plugin_restarts_total", "Launches of a plugin after its first.", false, float64(p.Restarts), l)
		for _, s := range pluginStates {
			c.send(ch, "xlb_plugin_state", "1 for the state a plugin is in, 0 for the others.", true, b2f(p.State == s),
				append(l[:1:1], pipeline.Label{Name: "state", Value: s.String()}))
		}
	}
}

// send sends one sample, with the Desc of its name and label names.
func (c *Collector) send(ch chan<- prometheus.Metric, name, help string, gauge bool, v float64, labels []pipeline.Label) {
	d, values := c.desc(name, help, labels)
	t := prometheus.CounterValue
	if gauge {
		t = prometheus.GaugeValue
	}
	ch <- prometheus.MustNewConstMetric(d, t, v, values...)
}

// desc returns the Desc of name with labels' names, made once, and the
// labels' values.
func (c *Collector) desc(name, help string, labels []pipeline.Label) (*prometheus.Desc, []string) {
	names := make([]string, len(labels))
	values := make([]string, len(labels))
	for i, l := range labels {
		names[i], values[i] = l.Name, l.Value
	}
	key := name + "\x00" + strings.Join(names, "\x00")
	c.mu.Lock()
	d := c.descs[key]
	if d == nil {
		d = prometheus.NewDesc(name, help, names, nil)
		c.descs[key] = d
	}
	c.mu.Unlock()
	return d, values
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
