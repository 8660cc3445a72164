package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/admin"
)

// counterRates is one read of /v1/counters with the per-second rates since
// the read before it: a line of counters -watch -o json.
type counterRates struct {
	Time time.Time `json:"time"`
	// Seconds is the time since the read before, over which the rates
	// are; 0, and every rate 0, on the first read.
	Seconds  float64        `json:"interval_seconds"`
	Elements []elementRates `json:"elements"`
	Drops    []dropRate     `json:"drops"`
}

type elementRates struct {
	Element      string  `json:"element"`
	Type         string  `json:"type"`
	In           uint64  `json:"in"`
	Out          uint64  `json:"out"`
	Consumed     uint64  `json:"consumed"`
	Dropped      uint64  `json:"dropped"`
	InRate       float64 `json:"in_per_second"`
	OutRate      float64 `json:"out_per_second"`
	ConsumedRate float64 `json:"consumed_per_second"`
	DroppedRate  float64 `json:"dropped_per_second"`
}

type dropRate struct {
	Element   string  `json:"element"`
	Reason    string  `json:"reason"`
	Packets   uint64  `json:"packets"`
	PerSecond float64 `json:"per_second"`
}

// rates sums cs's ports per element and computes each count's rate since
// prev (nil: none), matching elements by name and drops by element and
// reason. A count below prev's is a restarted daemon's, counted from zero.
func rates(prev *counterRates, cs admin.Counters, now time.Time) counterRates {
	r := counterRates{Time: now, Elements: []elementRates{}, Drops: []dropRate{}}
	oldElem, oldDrop := map[string]elementRates{}, map[[2]string]uint64{}
	if prev != nil {
		r.Seconds = now.Sub(prev.Time).Seconds()
		for _, e := range prev.Elements {
			oldElem[e.Element] = e
		}
		for _, d := range prev.Drops {
			oldDrop[[2]string{d.Element, d.Reason}] = d.Packets
		}
	}
	rate := func(cur, old uint64) float64 {
		if prev == nil || r.Seconds <= 0 {
			return 0
		}
		if cur < old {
			old = 0
		}
		return float64(cur-old) / r.Seconds
	}
	for _, s := range cs.Elements {
		e := elementRates{Element: s.Name, Type: s.Type, Consumed: s.Consumed, Dropped: s.Dropped}
		for _, p := range s.In {
			e.In += p.Packets
		}
		for _, p := range s.Out {
			e.Out += p.Packets
		}
		o := oldElem[s.Name]
		e.InRate, e.OutRate, e.ConsumedRate, e.DroppedRate = rate(e.In, o.In), rate(e.Out, o.Out), rate(e.Consumed, o.Consumed), rate(e.Dropped, o.Dropped)
		r.Elements = append(r.Elements, e)
	}
	for _, d := range cs.Drops {
		r.Drops = append(r.Drops, dropRate{Element: d.Element, Reason: d.Reason, Packets: d.Packets,
			PerSecond: rate(d.Packets, oldDrop[[2]string{d.Element, d.Reason}])})
	}
	return r
}

// writeCounters prints r as two tables, elements then drops; withRates
// adds the per-second columns ("-" on a first read, which has none).
func writeCounters(w io.Writer, r counterRates, withRates bool) error {
	perSecond := func(v float64) any {
		if r.Seconds == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	header := "element\ttype\tin\tout\tconsumed\tdropped"
	if withRates {
		header += "\tin/s\tout/s\tconsumed/s\tdropped/s"
	}
	var rows [][]any
	for _, e := range r.Elements {
		row := []any{e.Element, e.Type, e.In, e.Out, e.Consumed, e.Dropped}
		if withRates {
			row = append(row, perSecond(e.InRate), perSecond(e.OutRate), perSecond(e.ConsumedRate), perSecond(e.DroppedRate))
		}
		rows = append(rows, row)
	}
	if err := table(w, header, rows); err != nil {
		return err
	}
	if len(r.Drops) == 0 {
		return nil
	}
	header, rows = "element\treason\tdropped", rows[:0]
	if withRates {
		header += "\tdropped/s"
	}
	for _, d := range r.Drops {
		row := []any{d.Element, d.Reason, d.Packets}
		if withRates {
			row = append(row, perSecond(d.PerSecond))
		}
		rows = append(rows, row)
	}
	fmt.Fprintln(w)
	return table(w, header, rows)
}

func countersTable(w io.Writer, raw []byte) error {
	var cs admin.Counters
	if err := json.Unmarshal(raw, &cs); err != nil {
		return err
	}
	return writeCounters(w, rates(nil, cs, time.Time{}), false)
}

// watch reads the counters with get every interval and prints each read
// with its rates (a JSON line each with asJSON, else the tables: on a
// terminal redrawn in place, else one after the other) until ctx ends,
// which is no error. A failed read is.
func watch(ctx context.Context, w io.Writer, get func(context.Context) (admin.Counters, error), interval time.Duration, asJSON bool) error {
	if interval <= 0 {
		return fmt.Errorf("--interval %v: want a positive duration", interval)
	}
	redraw := isTerminal(w)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var prev *counterRates
	for {
		cs, err := get(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		r := rates(prev, cs, time.Now())
		switch {
		case asJSON:
			err = json.NewEncoder(w).Encode(r)
		default:
			if redraw {
				fmt.Fprint(w, "\x1b[H\x1b[2J")
			} else if prev != nil {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s, every %v (Ctrl-C to stop)\n", r.Time.Format(time.TimeOnly), interval)
			err = writeCounters(w, r, true)
		}
		if err != nil {
			return err
		}
		prev = &r
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (o *options) countersCmd() *cobra.Command {
	var every bool
	var interval time.Duration
	c := &cobra.Command{Use: "counters", Short: "Every element's counters and the drops by element and reason; -w: live, with rates",
		Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			if !every {
				return o.show(c, "/v1/counters", countersTable)
			}
			get := func(ctx context.Context) (admin.Counters, error) {
				var cs admin.Counters
				cl, ctx, cancel, err := o.client(c)
				if err != nil {
					return cs, err
				}
				defer cancel()
				return cs, cl.Get(ctx, "/v1/counters", &cs)
			}
			return watch(c.Context(), c.OutOrStdout(), get, interval, o.output == "json")
		}}
	c.Flags().BoolVarP(&every, "watch", "w", false, "redraw the counters with per-second rates every --interval until interrupted; -o json: a JSON object per line")
	c.Flags().DurationVar(&interval, "interval", time.Second, "with --watch: how often to read the counters")
	return c
}

func (o *options) graphCmd() *cobra.Command {
	return &cobra.Command{Use: "graph", Short: "The running graph in Graphviz DOT with live packet counts (pipe into: dot -Tsvg)",
		Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			cl, ctx, cancel, err := o.client(c)
			if err != nil {
				return err
			}
			defer cancel()
			var dot []byte
			if err := cl.Get(ctx, "/v1/graph", &dot); err != nil {
				return err
			}
			_, err = c.OutOrStdout().Write(dot)
			return err
		}}
}
