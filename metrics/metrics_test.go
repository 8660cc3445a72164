package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbproject/xlb/control/health"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// fakeSources are one of everything a running xlbd has: a graph with a
// ConnTrack on two workers and an encapsulation, a snapshot of one VIP
// with two backends, health checks, a plugin and an announcer.
func fakeSources() Sources {
	lbl := func(kv ...string) []pipeline.Label {
		var ls []pipeline.Label
		for i := 0; i < len(kv); i += 2 {
			ls = append(ls, pipeline.Label{Name: kv[i], Value: kv[i+1]})
		}
		return ls
	}
	elements := []pipeline.ElementStats{
		{Name: "ct", Type: "ConnTrack", In: []pipeline.PortStats{{Port: "in", Packets: 10}},
			Out: []pipeline.PortStats{{Port: "hit", Packets: 6}, {Port: "miss", Packets: 4}},
			Metrics: []pipeline.Metric{
				{Name: "xlb_conntrack_entries", Help: "Flows.", Value: 7, Gauge: true},
				{Name: pipeline.DropMetric, Help: "Dropped.", Labels: lbl("element", "ct", "reason", "full"), Value: 2},
			}},
		{Name: "encap", Type: "GREEncap", In: []pipeline.PortStats{{Port: "in", Packets: 8}}, Consumed: 8,
			Metrics: []pipeline.Metric{
				{Name: "xlb_encap_backend_packets_total", Help: "Packets to a backend.", Labels: lbl("vip", "web", "backend", "a"), Value: 5},
				{Name: "xlb_encap_backend_packets_total", Help: "Packets to a backend.", Labels: lbl("vip", "web", "backend", "b"), Value: 3},
			}},
	}
	// 9 probes: 2 of at most 1ms, 6 of 1ms to 2.5ms, 1 beyond every bucket.
	var latencies health.Latencies
	latencies.Counts[0], latencies.Counts[1], latencies.Counts[len(health.LatencyBuckets)] = 2, 6, 1
	latencies.Sum = 30*time.Second + 12*time.Millisecond
	snap := snapshot.New(42, 1, []snapshot.VIP{{Name: "web", Addr: netip.MustParseAddr("192.0.2.10")}},
		[]snapshot.Real{{ID: 0, Epoch: 1, Backend: "a", Weight: 1}, {ID: 1, Epoch: 1, Backend: "b", Weight: 3, State: snapshot.Draining}})
	return Sources{
		Elements: func() []pipeline.ElementStats { return elements },
		Workers: func([]pipeline.ElementStats) []WorkerMetric {
			return []WorkerMetric{
				{0, "ct", pipeline.Metric{Name: "xlb_conntrack_entries", Help: "Flows.", Value: 3, Gauge: true}},
				{1, "ct", pipeline.Metric{Name: "xlb_conntrack_entries", Help: "Flows.", Value: 4, Gauge: true}},
			}
		},
		Snapshot: func() *snapshot.Snapshot { return snap },
		Health: func() health.Stats {
			return health.Stats{Backends: []health.BackendStats{{Name: "a", Healthy: true, Transitions: 1,
				Methods: []health.MethodStats{{Method: "tcp", Up: true, Probes: 9, Last: health.Result{Latency: 1500 * time.Microsecond},
					Latencies: latencies}}}}}
		},
		Plugins: func() []host.Status { return []host.Status{{Name: "tcp", State: host.StateRunning, Restarts: 2}} },
		Announced: func() []host.AnnouncerStatus {
			return []host.AnnouncerStatus{{Name: "bgp", Routes: 3, InSync: true, Sessions: []sdk.Session{
				{Peer: "10.0.0.1", State: "established", Up: true, Prefixes: 3}, {Peer: "10.0.0.2", State: "active"}}}}
		},
		Reloads: func() (uint64, uint64) { return 5, 1 },
	}
}

// Every source's metrics, by name, labels and value; the ConnTrack's
// are per worker only, not summed as well.
func TestCollector(t *testing.T) {
	c := New(fakeSources())
	c.ObserveBuild(3, 2*time.Millisecond)
	want := `
# HELP xlb_announced_routes Routes the announcer holds announced now.
# TYPE xlb_announced_routes gauge
xlb_announced_routes{announcer="bgp"} 3
# HELP xlb_announcer_session_prefixes Prefixes the announcer announces to a peer now.
# TYPE xlb_announcer_session_prefixes gauge
xlb_announcer_session_prefixes{announcer="bgp",peer="10.0.0.1"} 3
xlb_announcer_session_prefixes{announcer="bgp",peer="10.0.0.2"} 0
# HELP xlb_announcer_session_state 1 for the state the announcer's session with a peer is in (BGP: idle, connect, active, opensent, openconfirm, established).
# TYPE xlb_announcer_session_state gauge
xlb_announcer_session_state{announcer="bgp",peer="10.0.0.1",state="established"} 1
xlb_announcer_session_state{announcer="bgp",peer="10.0.0.2",state="active"} 1
# HELP xlb_announcer_session_up 1 when the announcer's session with a peer (a BGP neighbor) carries routes (BGP: established).
# TYPE xlb_announcer_session_up gauge
xlb_announcer_session_up{announcer="bgp",peer="10.0.0.1"} 1
xlb_announcer_session_up{announcer="bgp",peer="10.0.0.2"} 0
# HELP xlb_backend_healthy 1 when health checking finds the backend up (as given to the data plane).
# TYPE xlb_backend_healthy gauge
xlb_backend_healthy{backend="a"} 1
# HELP xlb_backend_state A backend's state in a VIP (1 for the state it is in).
# TYPE xlb_backend_state gauge
xlb_backend_state{backend="a",state="up",vip="web"} 1
xlb_backend_state{backend="b",state="draining",vip="web"} 1
# HELP xlb_backend_weight A backend's weight in a VIP's Maglev table.
# TYPE xlb_backend_weight gauge
xlb_backend_weight{backend="a",vip="web"} 1
xlb_backend_weight{backend="b",vip="web"} 3
# HELP xlb_config_generation Generation of the snapshot the data plane runs (it grows with every reload and health change).
# TYPE xlb_config_generation gauge
xlb_config_generation 42
# HELP xlb_config_reloads_total Configuration reloads (SIGHUP, a config source's update) applied or rejected.
# TYPE xlb_config_reloads_total counter
xlb_config_reloads_total{result="failed"} 1
xlb_config_reloads_total{result="ok"} 5
# HELP xlb_conntrack_entries Flows.
# TYPE xlb_conntrack_entries gauge
xlb_conntrack_entries{element="ct",worker="0"} 3
xlb_conntrack_entries{element="ct",worker="1"} 4
# HELP xlb_drop_packets_total Dropped.
# TYPE xlb_drop_packets_total counter
xlb_drop_packets_total{element="ct",reason="full"} 2
# HELP xlb_element_consumed_packets_total Packets that left the graph at an element (sent, written).
# TYPE xlb_element_consumed_packets_total counter
xlb_element_consumed_packets_total{element="ct"} 0
xlb_element_consumed_packets_total{element="encap"} 8
# HELP xlb_element_packets_total Packets that passed an element's port.
# TYPE xlb_element_packets_total counter
xlb_element_packets_total{direction="in",element="ct",port="in"} 10
xlb_element_packets_total{direction="in",element="encap",port="in"} 8
xlb_element_packets_total{direction="out",element="ct",port="hit"} 6
xlb_element_packets_total{direction="out",element="ct",port="miss"} 4
# HELP xlb_encap_backend_packets_total Packets to a backend.
# TYPE xlb_encap_backend_packets_total counter
xlb_encap_backend_packets_total{backend="a",element="encap",vip="web"} 5
xlb_encap_backend_packets_total{backend="b",element="encap",vip="web"} 3
# HELP xlb_health_check_latency_seconds How long a backend's probes by one method took (those without a verdict left out).
# TYPE xlb_health_check_latency_seconds histogram
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.001"} 2
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.0025"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.005"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.01"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.025"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.05"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.1"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.25"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="0.5"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="1"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="2.5"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="5"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="10"} 8
xlb_health_check_latency_seconds_bucket{backend="a",method="tcp",le="+Inf"} 9
xlb_health_check_latency_seconds_sum{backend="a",method="tcp"} 30.012
xlb_health_check_latency_seconds_count{backend="a",method="tcp"} 9
# HELP xlb_plugin_restarts_total Launches of a plugin after its first.
# TYPE xlb_plugin_restarts_total counter
xlb_plugin_restarts_total{plugin="tcp"} 2
# HELP xlb_plugin_state 1 for the state a plugin is in, 0 for the others.
# TYPE xlb_plugin_state gauge
xlb_plugin_state{plugin="tcp",state="failed"} 0
xlb_plugin_state{plugin="tcp",state="restarting"} 0
xlb_plugin_state{plugin="tcp",state="running"} 1
xlb_plugin_state{plugin="tcp",state="starting"} 0
xlb_plugin_state{plugin="tcp",state="stopped"} 0
# HELP xlb_table_builds_total Maglev tables built (a reload or health change builds only the tables whose inputs changed).
# TYPE xlb_table_builds_total counter
xlb_table_builds_total 3
# HELP xlb_vips VIPs in the running configuration.
# TYPE xlb_vips gauge
xlb_vips 1
`
	names := []string{"xlb_announced_routes", "xlb_announcer_session_prefixes", "xlb_announcer_session_state", "xlb_announcer_session_up", "xlb_backend_healthy", "xlb_backend_state", "xlb_backend_weight",
		"xlb_config_generation", "xlb_config_reloads_total", "xlb_conntrack_entries", "xlb_drop_packets_total",
		"xlb_element_consumed_packets_total", "xlb_element_packets_total", "xlb_encap_backend_packets_total",
		"xlb_health_check_latency_seconds", "xlb_plugin_restarts_total", "xlb_plugin_state", "xlb_table_builds_total", "xlb_vips"}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "xlb_table_build_duration_seconds"); n != 1 {
		t.Fatalf("%d build duration histograms, want 1", n)
	}
	// Every name is xlb_ and passes the Prometheus linter.
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// A daemon without plugins or a running pipeline has only what exists:
// nil sources are left out, not reported as zero.
func TestCollectorNilSources(t *testing.T) {
	src := fakeSources()
	c := New(Sources{Snapshot: src.Snapshot})
	if n := testutil.CollectAndCount(c); n != 2+2+2*2 {
		t.Fatalf("%d metrics, want the builds, the generation and VIPs, and two backends' weight and state", n)
	}
}
