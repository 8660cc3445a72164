package pipeline

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// PortStats is the number of packets that passed one port.
type PortStats struct {
	Port    string
	Packets uint64
}

// ElementStats is one element's counters, summed over workers. Every
// packet a source puts in the graph, and every one an element emits (its
// Emitted), ends in exactly one element's Consumed or Dropped.
type ElementStats struct {
	Name, Type string
	In, Out    []PortStats
	Consumed   uint64 // packets that left the graph here (sent, written)
	Dropped    uint64 // packets dropped here, all reasons
	Emitted    uint64 // packets added to the graph here (Emitter)
	// Metrics are the element's own, summed by name and labels, then the
	// engine's drop counts: xlb_drop_packets_total{element,reason} for
	// every reason with drops, by reason name.
	Metrics []Metric
}

// DropMetric is the name of the engine's drop counter.
const DropMetric = "xlb_drop_packets_total"

// Stats returns every element's counters summed over all workers, in
// declaration order. It may be called while workers run.
func (rt *Runtime) Stats() []ElementStats {
	if len(rt.insts) == 0 {
		return nil
	}
	out := make([]ElementStats, len(rt.insts[0].elems))
	drops := make([][MaxReasons]uint64, len(out))
	for i, e := range rt.insts[0].elems {
		s := &out[i]
		s.Name, s.Type = e.decl.Name, e.typ.Name
		for _, p := range e.typ.Inputs {
			s.In = append(s.In, PortStats{Port: p})
		}
		for _, p := range e.typ.Outputs {
			s.Out = append(s.Out, PortStats{Port: p})
		}
	}
	for _, inst := range rt.insts {
		for i, e := range inst.elems {
			s := &out[i]
			for p := range e.inPkts {
				s.In[p].Packets += e.inPkts[p].Load()
			}
			for p := range e.outPkts {
				s.Out[p].Packets += e.outPkts[p].Load()
			}
			// Late drops are read first: their packets were published
			// as consumed before, so consumed never reads below them.
			late := e.drops.late.Load()
			s.Consumed += e.consumed.Load() - late
			s.Emitted += e.emitted.Load()
			for r := range e.drops.n {
				drops[i][r] += e.drops.n[r].Load()
			}
			if r, ok := e.el.(StatsReporter); ok {
				r.Stats(func(m Metric) { s.Metrics = addMetric(s.Metrics, m) })
			}
		}
	}
	names := Reasons()
	for i := range out {
		out[i].Dropped, out[i].Metrics = dropMetrics(out[i].Name, &drops[i], names, out[i].Metrics)
	}
	return out
}

// dropMetrics appends an element's non-zero drop counts to ms, by reason
// name, and returns their total.
func dropMetrics(element string, drops *[MaxReasons]uint64, names []string, ms []Metric) (uint64, []Metric) {
	var total uint64
	var ds []Metric
	for r, n := range drops {
		if n == 0 {
			continue
		}
		total += n
		name := Reason(r).String()
		if r < len(names) {
			name = names[r]
		}
		ds = append(ds, Metric{Name: DropMetric, Help: "Packets dropped, by the element that dropped them and why.",
			Labels: []Label{{Name: "element", Value: element}, {Name: "reason", Value: name}}, Value: n})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Labels[1].Value < ds[j].Labels[1].Value })
	return total, append(ms, ds...)
}

func addMetric(ms []Metric, m Metric) []Metric {
	for i := range ms {
		if ms[i].Name == m.Name && sameLabels(ms[i].Labels, m.Labels) {
			ms[i].Value += m.Value
			return ms
		}
	}
	return append(ms, m)
}

func sameLabels(a, b []Label) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// WriteText prints stats for people: every port's packet count, then the
// element's own metrics that are not zero.
func WriteText(w io.Writer, stats []ElementStats) error {
	var b strings.Builder
	for _, s := range stats {
		fmt.Fprintf(&b, "%s (%s)\n", s.Name, s.Type)
		for _, p := range s.In {
			fmt.Fprintf(&b, "  in  %-12s %12d\n", p.Port, p.Packets)
		}
		for _, p := range s.Out {
			fmt.Fprintf(&b, "  out %-12s %12d\n", p.Port, p.Packets)
		}
		if s.Consumed > 0 {
			fmt.Fprintf(&b, "  consumed         %12d\n", s.Consumed)
		}
		if s.Dropped > 0 {
			fmt.Fprintf(&b, "  dropped          %12d\n", s.Dropped)
		}
		if s.Emitted > 0 {
			fmt.Fprintf(&b, "  emitted          %12d\n", s.Emitted)
		}
		ms := append([]Metric(nil), s.Metrics...)
		sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
		for _, m := range ms {
			// Zero counters are left out: a human reads this, and the
			// drop reasons that did not happen are noise.
			if m.Value != 0 || m.Gauge {
				fmt.Fprintf(&b, "  %s%s %d\n", m.Name, formatLabels(m.Labels), m.Value)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatLabels(ls []Label) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = fmt.Sprintf("%s=%q", l.Name, l.Value)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// WriteDOT writes the graph in Graphviz DOT, one node per element, edges
// labelled with their ports. With stats (a Runtime's Stats of this graph,
// or nil for none), each edge also carries the packets its output port
// passed and each node what its element consumed and dropped, by reason:
// the running graph as xlbctl graph shows it.
func (g *Graph) WriteDOT(w io.Writer, stats []ElementStats) error {
	if stats != nil && len(stats) != len(g.elems) {
		return fmt.Errorf("WriteDOT: stats of %d elements for a graph of %d", len(stats), len(g.elems))
	}
	var b strings.Builder
	b.WriteString("digraph xlb {\n\trankdir=LR;\n\tnode [shape=box, fontname=\"monospace\"];\n")
	for i, e := range g.elems {
		lines := []string{e.decl.Name + " :: " + e.typ.Name}
		if stats != nil {
			if stats[i].Name != e.decl.Name {
				return fmt.Errorf("WriteDOT: stats of %q where the graph has %q", stats[i].Name, e.decl.Name)
			}
			lines = append(lines, nodeCounts(&stats[i])...)
		}
		fmt.Fprintf(&b, "\t%q [label=%s];\n", e.decl.Name, dotLabel(lines))
	}
	for i, e := range g.elems {
		for o, dst := range e.out {
			if dst.elem < 0 {
				continue
			}
			to := g.elems[dst.elem]
			fmt.Fprintf(&b, "\t%q -> %q [taillabel=%q, headlabel=%q", e.decl.Name, to.decl.Name, e.typ.Outputs[o], to.typ.Inputs[dst.in])
			if stats != nil {
				fmt.Fprintf(&b, ", label=\"%d\"", stats[i].Out[o].Packets)
			}
			b.WriteString("];\n")
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// nodeCounts are the lines a node's label adds for its element's counts:
// what left the graph there, and the drops with each reason's share.
func nodeCounts(s *ElementStats) []string {
	var lines []string
	if s.Consumed > 0 {
		lines = append(lines, fmt.Sprintf("consumed %d", s.Consumed))
	}
	if s.Dropped > 0 {
		lines = append(lines, fmt.Sprintf("dropped %d", s.Dropped))
	}
	for _, m := range s.Metrics {
		if m.Name == DropMetric {
			lines = append(lines, fmt.Sprintf("  %s %d", m.Labels[1].Value, m.Value))
		}
	}
	return lines
}

// dotLabel quotes lines as one DOT string, each line left-justified
// (DOT's \l) but for a lone line, which stays centred as it always was.
func dotLabel(lines []string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	if len(lines) == 1 {
		return `"` + r.Replace(lines[0]) + `"`
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, l := range lines {
		b.WriteString(r.Replace(l))
		b.WriteString(`\l`)
	}
	b.WriteByte('"')
	return b.String()
}

// Graph is the graph rt runs.
func (rt *Runtime) Graph() *Graph { return rt.graph }
