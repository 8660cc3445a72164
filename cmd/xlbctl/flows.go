package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/xlbproject/xlb/admin"
)

// flowCommands are the commands over ConnTrack and the tables: conntrack,
// lookup, the sequenced drain and plan.
func flowCommands(o *options) []*cobra.Command {
	conntrack := &cobra.Command{Use: "conntrack", Short: "ConnTrack per worker (entries, capacity) and live flows per VIP and backend",
		Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			q := url.Values{}
			for _, k := range []string{"vip", "backend"} {
				if v, _ := c.Flags().GetString(k); v != "" {
					q.Set(k, v)
				}
			}
			path := "/v1/conntrack"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			return o.show(c, path, conntrackTable)
		}}
	conntrack.Flags().String("vip", "", "only this VIP's flows")
	conntrack.Flags().String("backend", "", "only this backend's flows")
	lookup := &cobra.Command{Use: "lookup PROTO SRC:PORT DST:PORT", Short: "Which backend this node (and every node with its configuration) sends a flow to, and whether ConnTrack holds it",
		Args: cobra.ExactArgs(3), RunE: func(c *cobra.Command, args []string) error {
			q := url.Values{"proto": {args[0]}, "src": {args[1]}, "dst": {args[2]}}
			return o.show(c, "/v1/lookup?"+q.Encode(), lookupTable)
		}}
	lookup.ValidArgsFunction = cobra.FixedCompletions([]string{"tcp", "udp", "sctp", "icmp"}, cobra.ShellCompDirectiveNoFileComp)
	drain := &cobra.Command{Use: "drain BACKEND", Short: "Give BACKEND no new flows (kept over reloads), then wait until its established flows end",
		Args: cobra.ExactArgs(1), RunE: func(c *cobra.Command, args []string) error {
			if err := o.change(c, "/v1/backends/"+args[0]+"/drain", nil); err != nil {
				return err
			}
			if noWait, _ := c.Flags().GetBool("no-wait"); noWait {
				return nil
			}
			wait, _ := c.Flags().GetDuration("timeout")
			every, _ := c.Flags().GetDuration("interval")
			return o.waitDrained(c, args[0], wait, every)
		}}
	drain.Flags().Duration("timeout", 5*time.Minute, "how long to wait for the backend's flows to reach 0 (then exit 1)")
	drain.Flags().Duration("interval", time.Second, "how often to count the backend's flows")
	drain.Flags().Bool("no-wait", false, "only drain: do not wait for the flows to end")
	drain.ValidArgsFunction = o.completeBackends
	plan := &cobra.Command{Use: "plan FILE", Short: "What applying FILE as the main file would change, against the running configuration and its flows",
		Args: cobra.ExactArgs(1), RunE: func(c *cobra.Command, args []string) error {
			text, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			cl, ctx, cancel, err := o.client(c)
			if err != nil {
				return err
			}
			defer cancel()
			var raw json.RawMessage
			if err := cl.Post(ctx, "/v1/plan", admin.PlanRequest{Name: args[0], Text: string(text)}, &raw); err != nil {
				return err
			}
			if o.output == "json" {
				_, err := c.OutOrStdout().Write(append(raw, '\n'))
				return err
			}
			var res admin.PlanResult
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			if res.Diagnostics != "" {
				fmt.Fprint(c.ErrOrStderr(), res.Diagnostics)
			}
			admin.WritePlan(c.OutOrStdout(), &res)
			return nil
		}}
	return []*cobra.Command{conntrack, lookup, drain, plan}
}

// waitDrained counts backend's live flows every interval until they are
// 0, printing a line when the count changes (or every 10 intervals), and
// fails when wait passes first.
func (o *options) waitDrained(c *cobra.Command, backend string, wait, interval time.Duration) error {
	start := time.Now()
	deadline := start.Add(wait)
	w := c.OutOrStdout()
	last, lastAt := ^uint64(0), time.Time{}
	for {
		n, err := o.backendFlows(c.Context(), backend, min(o.timeout, time.Until(deadline)+time.Second))
		if err != nil {
			return err
		}
		took := time.Since(start).Round(100 * time.Millisecond)
		if n == 0 {
			fmt.Fprintf(w, "drained: 0 flows after %s\n", took)
			return nil
		}
		if n != last || time.Since(lastAt) >= 10*interval {
			fmt.Fprintf(w, "draining %s: %d flows after %s\n", backend, n, took)
			last, lastAt = n, time.Now()
		}
		if time.Now().Add(interval).After(deadline) {
			return fmt.Errorf("%s still has %d established flows after %s (--timeout); it stays drained", backend, n, took)
		}
		select {
		case <-time.After(interval):
		case <-c.Context().Done():
			return c.Context().Err()
		}
	}
}

// backendFlows sums backend's live flows over its VIPs and the workers.
func (o *options) backendFlows(ctx context.Context, backend string, timeout time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl, err := o.newClient()
	if err != nil {
		return 0, err
	}
	var ct admin.ConnTrack
	if err := cl.Get(ctx, "/v1/conntrack?"+url.Values{"backend": {backend}}.Encode(), &ct); err != nil {
		return 0, err
	}
	var n uint64
	for _, f := range ct.Flows {
		n += f.Flows
	}
	return n, nil
}

func conntrackTable(w io.Writer, raw []byte) error {
	var ct admin.ConnTrack
	if err := json.Unmarshal(raw, &ct); err != nil {
		return err
	}
	var rows [][]any
	for _, x := range ct.Workers {
		rows = append(rows, []any{x.Worker, x.Element, x.Entries, x.Capacity, fmt.Sprintf("%.1f%%", 100*float64(x.Entries)/float64(max(x.Capacity, 1)))})
	}
	if err := table(w, "worker\telement\tentries\tcapacity\tused", rows); err != nil {
		return err
	}
	rows = rows[:0]
	for _, f := range ct.Flows {
		rows = append(rows, []any{f.VIP, f.Backend, f.Flows})
	}
	fmt.Fprintln(w)
	return table(w, "vip\tbackend\tflows", rows)
}

func lookupTable(w io.Writer, raw []byte) error {
	var l admin.Lookup
	if err := json.Unmarshal(raw, &l); err != nil {
		return err
	}
	sel := l.Selected
	rows := [][]any{{"flow", fmt.Sprintf("%s %s -> %s", l.Proto, l.Src, l.Dst)}, {"hash", l.Hash}}
	switch {
	case sel.VIP == "":
		rows = append(rows, []any{"vip", "none: " + l.NoVIP})
	case sel.Backend == "":
		rows = append(rows, []any{"vip", sel.VIP}, []any{"new flows", "dropped: no backend takes new flows (" + sel.Reason + ")"})
	default:
		rows = append(rows, []any{"vip", sel.VIP}, []any{"new flows", fmt.Sprintf("%s (slot %d of %d)", sel.Backend, sel.Slot, sel.TableSize)})
	}
	for _, x := range l.Workers {
		what := "not held"
		switch {
		case x.Held:
			what = "holds it: " + x.Backend
		case x.Ignored != "":
			what = "not held (" + x.Ignored + " entry)"
		}
		rows = append(rows, []any{fmt.Sprintf("worker %d %s", x.Worker, x.Element), what})
	}
	goes := l.Backend
	switch {
	case goes == "":
		goes = "nowhere: dropped"
	case l.Tracked:
		goes += " (ConnTrack)"
	default:
		goes += " (Maglev)"
	}
	rows = append(rows, []any{"goes to", goes})
	return table(w, "field\tvalue", rows)
}
