// Command xlbctl asks a running xlbd through its admin API (docs/admin.md)
// and changes it: status, VIPs, backends, counters, the graph, ConnTrack,
// lookup, plan, reload, a drain that waits for the flows to end, undrain
// and weight.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control/snapshot"
)

func main() {
	// An interrupt ends counters -watch, which then exits 0.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs xlbctl with args and returns its exit code: 1 for an error
// (printed to stderr), 0 otherwise.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRoot()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		// A refused configuration's diagnostics come first: xlbd's
		// message says they are printed above it.
		var ae *admin.APIError
		if errors.As(err, &ae) && ae.Body.Diagnostics != "" {
			fmt.Fprintln(stderr, strings.TrimRight(ae.Body.Diagnostics, "\n"))
			err = errors.New(ae.Body.Error)
		}
		fmt.Fprintln(stderr, "xlbctl:", err)
		return 1
	}
	return 0
}

type options struct {
	socket, output         string
	tlsCert, tlsKey, tlsCA string
	timeout                time.Duration
}

func newRoot() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:           "xlbctl",
		Short:         "Ask a running xlbd, and change it, through its admin socket",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.output != "table" && o.output != "json" {
				return fmt.Errorf("-o %s: want table or json", o.output)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&o.socket, "socket", "s", admin.DefaultSocket,
		"xlbd's admin socket (xlbd run -admin-socket), or http://HOST:PORT or https://HOST:PORT (xlbd run -admin-listen)")
	root.PersistentFlags().StringVar(&o.tlsCert, "tls-cert", "", "with -s https://...: this client's certificate (PEM), signed by a CA of xlbd's -admin-tls-client-ca")
	root.PersistentFlags().StringVar(&o.tlsKey, "tls-key", "", "with -s https://...: the --tls-cert's private key (PEM)")
	root.PersistentFlags().StringVar(&o.tlsCA, "tls-ca", "", "with -s https://...: the CA (PEM) that signed xlbd's -admin-tls-cert; default: the system's")
	root.PersistentFlags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	root.PersistentFlags().DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for xlbd's answer")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))

	get := func(use, short, path string, table func(io.Writer, []byte) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			return o.show(c, path, table)
		}}
	}
	backends := &cobra.Command{Use: "backends [VIP]", Short: "Each VIP's backends: weight, state, health, traffic, overrides",
		Args: cobra.MaximumNArgs(1), RunE: func(c *cobra.Command, args []string) error {
			path := "/v1/backends"
			if len(args) == 1 {
				path += "?vip=" + args[0]
			}
			return o.show(c, path, backendsTable)
		}}
	write := func(use, short string, nargs int, path func([]string) string, body func([]string) (any, error)) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(nargs), RunE: func(c *cobra.Command, args []string) error {
			var in any
			if body != nil {
				var err error
				if in, err = body(args); err != nil {
					return err
				}
			}
			return o.change(c, path(args), in)
		}}
	}
	backendPath := func(action string) func([]string) string {
		return func(args []string) string { return "/v1/backends/" + args[0] + "/" + action }
	}
	root.AddCommand(
		get("status", "The daemon: version, uptime, configuration, generation, sources, cluster", "/v1/status", statusTable),
		get("vips", "The VIPs with their tables", "/v1/vips", vipsTable),
		backends,
		o.countersCmd(),
		o.graphCmd(),
		get("plugins", "The plugins' states", "/v1/plugins", pluginsTable),
		get("routes", "The route announcers' states", "/v1/routes", routesTable),
		write("reload", "Read the configuration anew and apply it, as SIGHUP does", 0, func([]string) string { return "/v1/reload" }, nil),
		write("undrain BACKEND", "Give BACKEND new flows again", 1, backendPath("undrain"), nil),
		write("weight BACKEND N", "Set BACKEND's weight to N; kept over reloads", 2, backendPath("weight"), func(args []string) (any, error) {
			n, err := strconv.ParseUint(args[1], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("weight %q: want an integer from 0 to 4294967295", args[1])
			}
			return map[string]uint64{"weight": n}, nil
		}),
		&cobra.Command{Use: "version", Short: "Print xlbctl's version", Args: cobra.NoArgs, RunE: func(c *cobra.Command, _ []string) error {
			info, _ := debug.ReadBuildInfo()
			admin.WriteVersion(c.OutOrStdout(), "xlbctl", info)
			return nil
		}},
	)
	root.AddCommand(flowCommands(o)...)
	// Backend names complete from the running daemon's.
	for _, c := range root.Commands() {
		switch c.Name() {
		case "drain", "undrain", "weight":
			c.ValidArgsFunction = o.completeBackends
		case "backends":
			c.ValidArgsFunction = o.completeVIPs
		}
	}
	return root
}

// client is the daemon's client of -s, and a context that ends after
// --timeout for one call.
func (o *options) client(c *cobra.Command) (*admin.Client, context.Context, context.CancelFunc, error) {
	cl, err := o.newClient()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(c.Context(), o.timeout)
	return cl, ctx, cancel, nil
}

// newClient is the client of -s: the socket, or a URL with its TLS files.
func (o *options) newClient() (*admin.Client, error) {
	if strings.Contains(o.socket, "://") {
		return admin.NewTCPClient(o.socket, o.tlsCert, o.tlsKey, o.tlsCA)
	}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsCA != "" {
		return nil, fmt.Errorf("--tls-cert, --tls-key and --tls-ca need -s https://HOST:PORT, not the socket %s", o.socket)
	}
	return admin.NewClient(o.socket), nil
}

// show prints GET path as JSON or as table prints it.
func (o *options) show(c *cobra.Command, path string, table func(io.Writer, []byte) error) error {
	cl, ctx, cancel, err := o.client(c)
	if err != nil {
		return err
	}
	defer cancel()
	var raw json.RawMessage
	if err := cl.Get(ctx, path, &raw); err != nil {
		return err
	}
	if o.output == "json" {
		_, err := c.OutOrStdout().Write(append(raw, '\n'))
		return err
	}
	return table(c.OutOrStdout(), raw)
}

// change posts in to path and reports the generation applied.
func (o *options) change(c *cobra.Command, path string, in any) error {
	cl, ctx, cancel, err := o.client(c)
	if err != nil {
		return err
	}
	defer cancel()
	var res admin.Result
	if err := cl.Post(ctx, path, in, &res); err != nil {
		return err
	}
	if o.output == "json" {
		return json.NewEncoder(c.OutOrStdout()).Encode(res)
	}
	if !res.Applied {
		return fmt.Errorf("rejected; the running configuration stays:\n%s", strings.TrimSpace(res.Diagnostics))
	}
	fmt.Fprintf(c.OutOrStdout(), "applied: generation %d\n", res.Generation)
	return nil
}

func (o *options) completeBackends(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return completeNames(o, c, args, "/v1/backends", func(b admin.Backend) string { return b.Backend })
}

func (o *options) completeVIPs(c *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	return completeNames(o, c, args, "/v1/vips", func(v admin.VIP) string { return v.Name })
}

// completeNames completes a command's first argument with the names
// (each once) of what GET path lists; nothing when xlbd does not answer.
func completeNames[T any](o *options, c *cobra.Command, args []string, path string, name func(T) string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cl, ctx, cancel, err := o.client(c)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer cancel()
	var items []T
	_ = cl.Get(ctx, path, &items)
	var names []string
	seen := map[string]bool{}
	for _, it := range items {
		if n := name(it); !seen[n] {
			seen[n], names = true, append(names, n)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func table(w io.Writer, header string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		s := make([]string, len(r))
		for i, v := range r {
			s[i] = fmt.Sprint(v)
		}
		fmt.Fprintln(tw, strings.Join(s, "\t"))
	}
	return tw.Flush()
}

func statusTable(w io.Writer, raw []byte) error {
	var st admin.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return err
	}
	version := ""
	if len(st.Version) > 0 {
		version = st.Version[0]
	}
	rows := [][]any{
		{"node", st.Node}, {"version", version},
		{"uptime", (time.Duration(st.UptimeSeconds) * time.Second).String()},
		{"config", st.Config}, {"generation", st.Generation},
		{"config_digest", snapshot.ShortDigest(st.ConfigDigest)},
		{"applied_at", st.AppliedAt.Format(time.RFC3339)}, {"workers", st.Workers},
	}
	if len(st.Shards) > 0 {
		rows = append(rows, []any{"shards", strings.Join(st.Shards, ", ")})
	}
	for _, s := range st.Sources {
		rows = append(rows, []any{"source " + s.Name, fmt.Sprintf("%s revision %s, %d documents %s", s.State, s.Revision, s.Documents, s.Unavailable)})
	}
	if st.Cluster.Checked {
		rows = append(rows, []any{"cluster", fmt.Sprintf("agree %v, withdrawn %v, %d nodes", st.Cluster.Agree, st.Cluster.Withdrawn, len(st.Cluster.Nodes))})
		for _, n := range st.Cluster.Nodes {
			shards := "every VIP"
			if len(n.Shards) > 0 {
				shards = "shards " + strings.Join(n.Shards, ", ")
			}
			rows = append(rows, []any{"  " + n.Node, fmt.Sprintf("%s, revision %s, %s", n.State, n.Revision, shards)})
		}
		for _, p := range st.Cluster.Problems {
			rows = append(rows, []any{"  problem", p})
		}
	}
	if err := table(w, "field\tvalue", rows); err != nil {
		return err
	}
	if r := st.Rejected; r != nil {
		fmt.Fprintf(w, "rejected change from %s %s at %s:\n%s\n", r.Source, r.Revision, r.At.Format(time.RFC3339), strings.TrimSpace(r.Diagnostics))
	}
	return nil
}

func vipsTable(w io.Writer, raw []byte) error {
	var vs []admin.VIP
	if err := json.Unmarshal(raw, &vs); err != nil {
		return err
	}
	var rows [][]any
	for _, v := range vs {
		ports := "*"
		if len(v.Ports) > 0 {
			ports = strings.Trim(fmt.Sprint(v.Ports), "[]")
		}
		rows = append(rows, []any{v.Name, v.Address, v.Protocol, ports, v.Pool, v.Backends, v.TableSize, snapshot.ShortDigest(v.TableDigest)})
	}
	return table(w, "vip\taddress\tprotocol\tports\tpool\tbackends\ttable_size\ttable_digest", rows)
}

func backendsTable(w io.Writer, raw []byte) error {
	var bs []admin.Backend
	if err := json.Unmarshal(raw, &bs); err != nil {
		return err
	}
	var rows [][]any
	for _, b := range bs {
		override := "-"
		if o := b.Override; o != nil {
			var parts []string
			if o.Drain != nil {
				parts = append(parts, "drain="+strconv.FormatBool(*o.Drain))
			}
			if o.Weight != nil {
				parts = append(parts, "weight="+strconv.FormatUint(uint64(*o.Weight), 10))
			}
			override = strings.Join(parts, ",")
		}
		rows = append(rows, []any{b.VIP, b.Backend, b.Address, b.Weight, b.State, b.Health, b.Packets, b.Bytes, override})
	}
	header := "vip\tbackend\taddress\tweight\tstate\thealth\tpackets\tbytes\toverride"
	// The SNAT ranges' column only when a VIP has them, so that the
	// table of a configuration without SNAT is as it was.
	if slices.ContainsFunc(bs, func(b admin.Backend) bool { return b.SNAT != "" }) {
		header += "\tsnat_ports"
		for i, b := range bs {
			rows[i] = append(rows[i], cmp.Or(b.SNAT, "-"))
		}
	}
	return table(w, header, rows)
}

func pluginsTable(w io.Writer, raw []byte) error {
	var ps []admin.Plugin
	if err := json.Unmarshal(raw, &ps); err != nil {
		return err
	}
	var rows [][]any
	for _, p := range ps {
		rows = append(rows, []any{p.Name, p.State, p.Version, p.PID, p.Restarts, p.LastError})
	}
	return table(w, "plugin\tstate\tversion\tpid\trestarts\tlast_error", rows)
}

func routesTable(w io.Writer, raw []byte) error {
	var rs []admin.Route
	if err := json.Unmarshal(raw, &rs); err != nil {
		return err
	}
	var rows, sessions [][]any
	for _, r := range rs {
		rows = append(rows, []any{r.Announcer, r.Routes, r.InSync, r.Sends, r.LastError})
		for _, x := range r.Sessions {
			sessions = append(sessions, []any{r.Announcer, x.Peer, x.State, x.Prefixes})
		}
	}
	if err := table(w, "announcer\troutes\tin_sync\tsends\tlast_error", rows); err != nil || len(sessions) == 0 {
		return err
	}
	fmt.Fprintln(w)
	return table(w, "announcer\tpeer\tstate\tprefixes", sessions)
}
