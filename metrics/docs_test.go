package metrics

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var metricName = regexp.MustCompile(`xlb_[a-z0-9_]+`)

// Every metric the Collector serves is in docs/metrics.md, and every
// metric the Grafana dashboard queries is one the docs list.
func TestDocumented(t *testing.T) {
	docs, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(fakeSources()))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.Contains(string(docs), "`"+mf.GetName()+"`") {
			t.Errorf("%s is not in docs/metrics.md", mf.GetName())
		}
	}
	dash, err := os.ReadFile("../examples/grafana/xlb.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range metricName.FindAllString(string(dash), -1) {
		name = strings.TrimSuffix(name, "_bucket")
		if !strings.Contains(string(docs), "`"+name+"`") {
			t.Errorf("examples/grafana/xlb.json queries %s, which docs/metrics.md does not list", name)
		}
	}
}
