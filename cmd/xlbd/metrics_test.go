package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket/pcapgo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// TestMetricsScrape runs the offline example's pipeline as xlbd run does,
// with its metrics served on a loopback port, reloads it once as it is and
// once broken, and scrapes /metrics over HTTP: the packet counts are those
// of the capture files read and written, and every packet not written is
// a counted drop. Scrapes run meanwhile, for the race detector.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	input, err := filepath.Abs("../../examples/offline/input.pcap")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(string(src), `file = "input.pcap"`, "file = "+`"`+input+`"`, 1)
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.pcap")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := newServices("", false, log)
	if err != nil {
		t.Fatal(err)
	}
	d := newDaemon(s, log, path, varFlags{"output": out}, io.Discard, "lb1", "")
	m := startMetrics("127.0.0.1:0", log, s, d)
	defer m.stop()
	if m.addr == nil {
		t.Fatal("metrics not served")
	}
	f, err := d.attempt(true)
	if err != nil {
		t.Fatal(err)
	}
	s.running = f
	rt, err := f.Graph.Start(pipeline.Options{Workers: 1, Values: snapshot.WithStore(nil, s.ctl.Store())})
	if err != nil {
		t.Fatal(err)
	}
	m.rt.Store(rt)
	// Scrapes while the workers run, for the race detector.
	stop, scraped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scraped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if resp, err := http.Get("http://" + m.addr.String() + "/metrics"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	err = rt.Run(context.Background())
	close(stop)
	<-scraped
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.attempt(true); err != nil {
		t.Fatalf("reloading the same file: %v", err)
	}
	if err := os.WriteFile(path, []byte(good+"\nvip {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.attempt(true); err == nil {
		t.Fatal("a broken file was applied")
	}

	sent, written := pcapPackets(t, input), pcapPackets(t, out)
	if written == 0 || written == sent {
		t.Fatalf("the example wrote %d of %d packets: the test needs some dropped", written, sent)
	}
	mfs := scrape(t, "http://"+m.addr.String()+"/metrics")
	checkMetrics(t, mfs, []wantMetric{
		{"xlb_element_packets_total", map[string]string{"element": "rx", "direction": "out"}, float64(sent)},
		{"xlb_element_consumed_packets_total", map[string]string{"element": "tx"}, float64(written)},
		{"xlb_encap_backend_packets_total", nil, float64(written)},
		{"xlb_drop_packets_total", nil, float64(sent - written)},
		{"xlb_config_reloads_total", map[string]string{"result": "ok"}, 1},
		{"xlb_config_reloads_total", map[string]string{"result": "failed"}, 1},
		{"xlb_config_generation", nil, float64(s.ctl.Snapshot().Generation)},
		{"xlb_vips", nil, float64(len(s.ctl.Snapshot().VIPs))},
		{"xlb_table_builds_total", nil, float64(len(s.ctl.Snapshot().VIPs))},
	})
	if got := sum(mfs["xlb_conntrack_entries"], map[string]string{"element": "ct", "worker": "0"}); got == 0 {
		t.Error("no ConnTrack entries on worker 0")
	}
	if got := sum(mfs["xlb_encap_backend_packets_total"], map[string]string{"vip": "web4"}); got == 0 || got >= float64(written) {
		t.Errorf("VIP web4 got %v of %d packets, want some but not all", got, written)
	}
}

// wantMetric is the sum of the samples of name that carry labels.
type wantMetric struct {
	name   string
	labels map[string]string
	want   float64
}

func checkMetrics(t *testing.T, mfs map[string]*dto.MetricFamily, ws []wantMetric) {
	t.Helper()
	for _, w := range ws {
		if got := sum(mfs[w.name], w.labels); got != w.want {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.want)
		}
	}
}

// pcapPackets counts the packets of a capture file.
func pcapPackets(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := r.ZeroCopyReadPacketData(); err == io.EOF {
			return n
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
}

// scrape GETs url and parses the Prometheus text it returns.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// sum adds the values of mf's samples that carry every label of labels.
func sum(mf *dto.MetricFamily, labels map[string]string) float64 {
	if mf == nil {
		return -1
	}
	var v float64
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, want := range labels {
			match = match && have[k] == want
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		}
	}
	return v
}

// TestMetricsPlugins: with health-check plugins, a scrape reports each
// plugin's state and restarts and each checked backend's health.
func TestMetricsPlugins(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := newServices(t.TempDir(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	var stderr strings.Builder
	path := fakeFile(t, t.TempDir(), "  health_check \"fake\" {}\n", "", "", "")
	if _, err := s.apply(path, varFlags{}, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	d := newDaemon(s, log, path, varFlags{}, io.Discard, "lb1", "")
	m := startMetrics("127.0.0.1:0", log, s, d)
	defer m.stop()
	mfs := scrape(t, "http://"+m.addr.String()+"/metrics")
	checkMetrics(t, mfs, []wantMetric{
		{"xlb_plugin_state", map[string]string{"plugin": "fake", "state": "running"}, 1},
		{"xlb_plugin_state", map[string]string{"plugin": "fake"}, 1},
		{"xlb_plugin_restarts_total", map[string]string{"plugin": "fake"}, 0},
	})
	checked := s.sched.Stats().Backends
	if len(checked) == 0 {
		t.Fatal("no backend is checked")
	}
	if got := len(mfs["xlb_backend_healthy"].GetMetric()); got != len(checked) {
		t.Errorf("xlb_backend_healthy has %d backends, want the %d checked", got, len(checked))
	}
}
