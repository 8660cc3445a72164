package main

import (
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// TestPrintStatsRemovedBackend: a backend the running configuration no
// longer has (a reload removed it) keeps its row in the exit table, with
// its counts and "removed" for a weight.
func TestPrintStatsRemovedBackend(t *testing.T) {
	a := netip.MustParseAddr("10.0.0.1")
	snap := snapshot.New(2, 0, []snapshot.VIP{{Name: "web", Addr: netip.MustParseAddr("192.0.2.1"), Proto: 6, Reals: []uint32{0}}},
		[]snapshot.Real{{ID: 0, Epoch: 1, Backend: "be1", Addr: a, Addr16: a.As16(), Family: 4, Weight: 3}})
	row := func(backend string, pkts, bytes uint64) []pipeline.Metric {
		l := []pipeline.Label{{Name: "vip", Value: "web"}, {Name: "backend", Value: backend}}
		return []pipeline.Metric{{Name: "xlb_encap_backend_packets_total", Labels: l, Value: pkts},
			{Name: "xlb_encap_backend_bytes_total", Labels: l, Value: bytes}}
	}
	stats := []pipeline.ElementStats{{Name: "encap", Type: "GREEncap", Metrics: append(row("be1", 5, 500), row("be2", 7, 700)...)}}
	var out strings.Builder
	printStats(&out, stats, snap)
	for _, want := range []string{`web\s+be1\s+3\s+5\s+500`, `web\s+be2\s+removed\s+7\s+700`} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("no row matching %q in the exit table:\n%s", want, out.String())
		}
	}
}
