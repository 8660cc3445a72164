package admin

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/xlbproject/xlb/control"
)

// HealthNote is what a plan cannot know: it builds tables with every
// backend up, so a backend down now is in them.
const HealthNote = "every backend is assumed healthy (plan does not run health checks)"

// WritePlan prints a plan for a person deciding whether to apply it: what
// moves first, one line per changed backend, unchanged VIPs only counted.
// `xlbd plan` and `xlbctl plan` print with it.
func WritePlan(w io.Writer, o *PlanResult) {
	against := o.Against
	if against == "" {
		against = "an empty configuration"
	}
	fmt.Fprintf(w, "xlbd plan: %s against %s\n", o.Config, against)
	fmt.Fprintf(w, "Health: %s.\n", HealthNote)
	fmt.Fprintln(w, "Moved shares are of new flows: established flows keep their backend (ConnTrack) unless it is removed.")
	if o.OldHashSeed != o.NewHashSeed {
		// A reload keeps the running seed (ConnTrack finds a flow by its
		// seeded hash): the new one applies at the restart, and then to
		// every flow, established ones included.
		fmt.Fprintf(w, "\n! hash_seed changes %d -> %d: a reload keeps the running seed; the new one takes effect when\n"+
			"  xlbd restarts, and then every flow is hashed anew: ConnTrack no longer finds established flows,\n"+
			"  so the shares below apply to ESTABLISHED flows too; restart every node of the fleet together,\n"+
			"  or ECMP moves flows between nodes that disagree.\n", o.OldHashSeed, o.NewHashSeed)
	}
	if o.PipelineChanged {
		fmt.Fprintf(w, "\n! the pipeline block changes: that takes effect only when xlbd restarts (details on stderr).\n")
	}
	for _, v := range o.VIPs {
		if v.Action == control.ActionNone {
			continue
		}
		fmt.Fprintln(w)
		writeVIP(w, &v)
		for _, a := range o.Affected {
			if a.VIP == v.Name {
				fmt.Fprintf(w, "    established flows leaving their backend now: %d\n", a.Flows)
			}
		}
	}
	t := o.Total
	fmt.Fprintf(w, "\nTotal: VIPs: %d to add, %d to change, %d to remove, %d unchanged; backends: %d added, %d removed, %d reweighted, %d drained, %d undrained, %d readdressed.\n",
		t.VIPsAdded, t.VIPsChanged, t.VIPsRemoved, t.VIPsUnchanged,
		t.BackendsAdded, t.BackendsRemoved, t.BackendsReweighted, t.BackendsDrained, t.BackendsUndrained, t.BackendsReaddressed)
	var most *control.VIPPlan
	for i, v := range o.VIPs {
		if v.MovedShare != nil && *v.MovedShare > 0 && (most == nil || *v.MovedShare > *most.MovedShare) {
			most = &o.VIPs[i]
		}
	}
	if o.FlowsCounted {
		var n uint64
		for _, a := range o.Affected {
			n += a.Flows
		}
		fmt.Fprintf(w, "Established flows (ConnTrack, every worker) leaving their backend: %d.\n", n)
	}
	switch {
	case !t.Changed && !o.PipelineChanged:
		fmt.Fprintln(w, "No changes.")
	case most != nil:
		fmt.Fprintf(w, "Largest move: VIP %q, %s of its new flows go to another backend.\n", most.Name, percent(*most.MovedShare))
	default:
		fmt.Fprintln(w, "No new flow of an existing VIP changes backend.")
	}
}

func writeVIP(w io.Writer, v *control.VIPPlan) {
	switch v.Action {
	case control.ActionAdd:
		fmt.Fprintf(w, "+ vip %q %s: added, %d backends\n", v.Name, describeVIP(v.New), v.New.Backends)
	case control.ActionRemove:
		fmt.Fprintf(w, "- vip %q %s: removed; xlb stops forwarding its traffic, established flows included\n", v.Name, describeVIP(v.Old))
	default:
		fmt.Fprintf(w, "~ vip %q %s\n", v.Name, describeVIP(v.New))
		for _, c := range vipChanges(v.Old, v.New) {
			fmt.Fprintf(w, "    %s\n", c)
		}
		moved := "new flows moving to another backend: " + percent(*v.MovedShare)
		if v.Slots > 0 {
			moved += fmt.Sprintf(" (%d of %d table slots)", v.MovedSlots, v.Slots)
		}
		fmt.Fprintf(w, "    %s\n", moved)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, b := range v.Backends {
		sign, what := describeBackend(v.Action, &b)
		fmt.Fprintf(tw, "    %s %s\t%s\n", sign, b.Name, what)
	}
	_ = tw.Flush()
}

func describeVIP(s *control.VIPState) string {
	ports := "all ports"
	if len(s.Ports) > 0 {
		ports = "port " + strings.Trim(fmt.Sprint(s.Ports), "[]")
	}
	return fmt.Sprintf("(%s %s %s, pool %s)", s.Address, s.Protocol, ports, s.Pool)
}

// vipChanges names what changed in a VIP's own declaration.
func vipChanges(o, n *control.VIPState) []string {
	var out []string
	diff := func(what string, a, b any) {
		if fmt.Sprint(a) != fmt.Sprint(b) {
			out = append(out, fmt.Sprintf("%s %v -> %v", what, a, b))
		}
	}
	diff("address", o.Address, n.Address)
	diff("protocol", o.Protocol, n.Protocol)
	diff("ports", o.Ports, n.Ports)
	diff("pool", o.Pool, n.Pool)
	diff("table_size", o.TableSize, n.TableSize)
	diff("snat_ports", o.SNATPorts, n.SNATPorts)
	return out
}

// describeBackend is a backend's sign and line in a VIP's list. Within an
// added VIP every backend is new to it, whatever other VIPs have.
func describeBackend(vip string, b *control.BackendPlan) (string, string) {
	switch b.Action {
	case control.ActionAdd:
		what := fmt.Sprintf("weight %d, %s, %s of new flows", b.New.Weight, b.New.Address, percent(b.New.Share))
		if b.New.SNAT != "" {
			what += ", SNAT ports " + b.New.SNAT
		}
		if b.New.State == "draining" {
			what += " (draining)"
		}
		if vip == control.ActionAdd {
			return "+", what
		}
		return "+", "added, " + what
	case control.ActionRemove:
		if vip == control.ActionRemove {
			return "-", fmt.Sprintf("weight %d, %s", b.Old.Weight, b.Old.Address)
		}
		return "-", fmt.Sprintf("removed (weight %d, %s of new flows); its established flows are re-selected", b.Old.Weight, percent(b.Old.Share))
	}
	var what []string
	if b.Old.Weight != b.New.Weight {
		what = append(what, fmt.Sprintf("weight %d -> %d", b.Old.Weight, b.New.Weight))
	}
	switch {
	case b.Old.State != "draining" && b.New.State == "draining":
		what = append(what, "drained: keeps its established flows, takes no new ones")
	case b.Old.State == "draining" && b.New.State != "draining":
		what = append(what, "undrained: takes new flows again")
	}
	if b.Old.Address != b.New.Address {
		what = append(what, fmt.Sprintf("address %s -> %s: its established flows go to the new address", b.Old.Address, b.New.Address))
	}
	if b.Old.SNAT != b.New.SNAT {
		what = append(what, fmt.Sprintf("SNAT ports %s -> %s: its outbound connections from the old range break", cmp.Or(b.Old.SNAT, "none"), cmp.Or(b.New.SNAT, "none")))
	}
	what = append(what, fmt.Sprintf("new flows %s -> %s", percent(b.Old.Share), percent(b.New.Share)))
	return "~", strings.Join(what, "; ")
}

// percent shows a share so that a non-zero one never reads 0%.
func percent(share float64) string {
	switch {
	case share == 0:
		return "0%"
	case share < 0.001:
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", share*100)
}
