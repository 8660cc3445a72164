package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// FlowSource is what /v1/conntrack, /v1/lookup and /v1/plan read beyond
// Source: the graph's running instances, whose elements answer for
// themselves (pipeline.FlowHasher, FlowSelector, FlowTracker), and a plan
// against the running configuration. xlbd run's daemon implements it.
type FlowSource interface {
	Workers() []*pipeline.Instance
	// Plan plans the main file text (named name, for diagnostics) with
	// the running configuration's source documents and overrides,
	// against the running configuration, changing nothing. A file with
	// errors is an *InputError, with PlanResult.Diagnostics.
	Plan(ctx context.Context, name string, text []byte) (PlanResult, error)
}

// workerWait bounds how long an answer waits for a worker: a live worker
// answers within its source's poll interval (RxXDP's poll_timeout), a
// stopped one never.
const workerWait = 5 * time.Second

// ConnTrack is /v1/conntrack: each worker's flow tables, and the live
// flows of each backend of each VIP summed over workers.
type ConnTrack struct {
	Workers []ConnTrackWorker    `json:"workers"`
	Flows   []pipeline.FlowCount `json:"flows"`
}

// ConnTrackWorker is one flow table (element) of one worker.
type ConnTrackWorker struct {
	Worker   int    `json:"worker"`
	Element  string `json:"element"`
	Entries  uint64 `json:"entries"`
	Capacity uint64 `json:"capacity"`
}

// Lookup is /v1/lookup: where a flow goes and why.
type Lookup struct {
	Proto string `json:"proto"`
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Hash  string `json:"hash"`
	// Selected is what MaglevSelect picks for a new flow now, the same on
	// every node with the same configuration.
	Selected pipeline.FlowSelection `json:"selected"`
	// NoVIP says why the flow is for no VIP, when it is not.
	NoVIP string `json:"no_vip,omitempty"`
	// Workers says, per worker, what its ConnTrack holds: a held flow
	// goes to that backend, whatever Selected says.
	Workers []LookupWorker `json:"workers"`
	// Backend is where this node sends the flow: a ConnTrack's backend
	// when one holds it, else Selected's ("" when dropped).
	Backend string `json:"backend"`
	Tracked bool   `json:"tracked"`
}

// LookupWorker is one worker's flow table's answer.
type LookupWorker struct {
	Worker  int    `json:"worker"`
	Element string `json:"element"`
	pipeline.TrackedFlow
}

// PlanRequest is the body of POST /v1/plan.
type PlanRequest struct {
	// Name is the file's name in diagnostics.
	Name string `json:"name"`
	Text string `json:"text"`
}

// PlanResult is /v1/plan: what `xlbd plan -o json` prints, planned against
// the running configuration, and the established flows affected.
type PlanResult struct {
	Config  string `json:"config"`
	Against string `json:"against"` // "" for an empty configuration
	Health  string `json:"health"`
	// PipelineChanged: the pipeline block differs, which takes effect
	// only at a restart.
	PipelineChanged bool `json:"pipeline_changed"`
	*control.Plan
	// FlowsCounted: planned by the daemon, which counted its established
	// flows. Affected is then, per VIP with any, the established flows
	// that would leave their backend: those of a removed VIP, or of a
	// backend the VIP loses.
	FlowsCounted bool            `json:"flows_counted,omitempty"`
	Affected     []AffectedFlows `json:"affected,omitempty"`
	// Diagnostics are the warnings (or, with a 400, the errors) the file
	// has, as xlbd plan prints them.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// AffectedFlows is the established flows of one VIP a plan moves.
type AffectedFlows struct {
	VIP   string `json:"vip"`
	Flows uint64 `json:"flows"`
}

// flowRoutes adds the flow endpoints to Handler's mux.
func flowRoutes(get, post func(string, func(*http.Request) (any, error)), src Source, fs FlowSource) {
	get("/v1/conntrack", func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return connTrack(r.Context(), src.Snapshot(), fs.Workers(), q.Get("vip"), q.Get("backend"))
	})
	get("/v1/lookup", func(r *http.Request) (any, error) {
		return lookup(r.Context(), src.Snapshot(), fs.Workers(), r.URL.Query())
	})
	post("/v1/plan", func(r *http.Request) (any, error) {
		var req PlanRequest
		dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, &InputError{Msg: fmt.Sprintf("malformed JSON body: %v; want {\"name\": FILE, \"text\": HCL}", err)}
		}
		if req.Name == "" {
			req.Name = "plan.hcl"
		}
		res, err := fs.Plan(r.Context(), req.Name, []byte(req.Text))
		if err != nil {
			return Result{Diagnostics: res.Diagnostics}, err
		}
		ct, err := connTrack(r.Context(), src.Snapshot(), fs.Workers(), "", "")
		if err != nil {
			return nil, err
		}
		res.FlowsCounted, res.Affected = true, affected(res.Plan, ct.Flows)
		return res, nil
	})
}

// trackers calls ask for every flow table of every worker at once (each
// answers at its own batch boundary) and returns the answers in worker
// order.
func trackers[T any](ctx context.Context, workers []*pipeline.Instance, ask func(context.Context, pipeline.FlowTracker) (T, error)) ([]T, []ConnTrackWorker, error) {
	ctx, cancel := context.WithTimeout(ctx, workerWait)
	defer cancel()
	var who []ConnTrackWorker
	var fts []pipeline.FlowTracker
	for w, inst := range workers {
		for name, el := range inst.Elements() {
			if ft, ok := el.(pipeline.FlowTracker); ok {
				who, fts = append(who, ConnTrackWorker{Worker: w, Element: name}), append(fts, ft)
			}
		}
	}
	out := make([]T, len(fts))
	errs := make([]error, len(fts))
	var wg sync.WaitGroup
	for i, ft := range fts {
		wg.Go(func() { out[i], errs[i] = ask(ctx, ft) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("worker %d's %s did not answer within %s (is the worker running?): %w", who[i].Worker, who[i].Element, workerWait, err)
		}
	}
	return out, who, nil
}

// connTrack answers /v1/conntrack. With vip or backend, Flows lists only
// those (an unknown name is a 404), each member of the running snapshot
// listed, with 0 flows when it has none.
func connTrack(ctx context.Context, snap *snapshot.Snapshot, workers []*pipeline.Instance, vip, backend string) (ConnTrack, error) {
	if err := knownNames(snap, vip, backend); err != nil {
		return ConnTrack{}, err
	}
	tabs, who, err := trackers(ctx, workers, func(ctx context.Context, ft pipeline.FlowTracker) (pipeline.FlowTableStats, error) {
		return ft.FlowTable(ctx)
	})
	if err != nil {
		return ConnTrack{}, err
	}
	sum := map[[2]string]uint64{}
	for i := range snap.VIPs {
		v := &snap.VIPs[i]
		for _, id := range v.Reals {
			if r := snap.Reals.At(id); r.Epoch != 0 {
				sum[[2]string{v.Name, r.Backend}] += 0
			}
		}
	}
	out := ConnTrack{Workers: who, Flows: []pipeline.FlowCount{}}
	for i, t := range tabs {
		out.Workers[i].Entries, out.Workers[i].Capacity = t.Entries, t.Capacity
		for _, fc := range t.Flows {
			sum[[2]string{fc.VIP, fc.Backend}] += fc.Flows
		}
	}
	for k, n := range sum {
		if (vip == "" || k[0] == vip) && (backend == "" || k[1] == backend) {
			out.Flows = append(out.Flows, pipeline.FlowCount{VIP: k[0], Backend: k[1], Flows: n})
		}
	}
	slices.SortFunc(out.Flows, func(a, b pipeline.FlowCount) int {
		return cmp.Or(cmp.Compare(a.VIP, b.VIP), cmp.Compare(a.Backend, b.Backend))
	})
	return out, nil
}

// knownNames refuses a VIP or backend the running snapshot lacks.
func knownNames(snap *snapshot.Snapshot, vip, backend string) error {
	if vip != "" && !slices.ContainsFunc(snap.VIPs, func(v snapshot.VIP) bool { return v.Name == vip }) {
		return &notFound{msg: fmt.Sprintf("no VIP %q in the running configuration", vip)}
	}
	if backend == "" {
		return nil
	}
	for _, r := range snap.Reals.All() {
		if r.Epoch != 0 && r.Backend == backend {
			return nil
		}
	}
	return &notFound{msg: fmt.Sprintf("no backend %q in the running configuration", backend)}
}

// FlowOf parses a lookup's protocol (tcp, udp, sctp, icmp, or a number)
// and addresses (IP:PORT, [IPv6]:PORT; for ICMP the port is the echo
// identifier and may be left out) into the flow Parse5Tuple would write.
func FlowOf(proto, src, dst string) (pipeline.Flow, error) {
	var f pipeline.Flow
	s, sp, err := hostPort("src", src)
	if err != nil {
		return f, err
	}
	d, dp, err := hostPort("dst", dst)
	if err != nil {
		return f, err
	}
	if s.Is4() != d.Is4() {
		return f, &InputError{Msg: fmt.Sprintf("src %s and dst %s are of different IP families", s, d)}
	}
	f.Family = 6
	if s.Is4() {
		f.Family = 4
	}
	f.Src, f.Dst = s.As16(), d.As16()
	switch strings.ToLower(proto) {
	case "tcp":
		f.Proto = 6
	case "udp":
		f.Proto = 17
	case "sctp":
		f.Proto = 132
	case "icmp", "icmpv6":
		f.Proto = 1
		if f.Family == 6 {
			f.Proto = 58
		}
		// Parse5Tuple keys an echo on its identifier, in both ports.
		id := max(sp, dp)
		f.SrcPort, f.DstPort = id, id
		return f, nil
	default:
		n, err := strconv.ParseUint(proto, 10, 8)
		if err != nil {
			return f, &InputError{Msg: fmt.Sprintf("proto %q: want tcp, udp, sctp, icmp or an IP protocol number", proto)}
		}
		f.Proto = uint8(n)
		return f, nil
	}
	if sp == 0 || dp == 0 {
		return f, &InputError{Msg: fmt.Sprintf("%s needs ports: src and dst as IP:PORT ([IPv6]:PORT)", proto)}
	}
	f.SrcPort, f.DstPort = sp, dp
	return f, nil
}

// hostPort parses IP, IP:PORT or [IPv6]:PORT; a missing port is 0.
func hostPort(what, s string) (netip.Addr, uint16, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), ap.Port(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), 0, nil
	}
	return netip.Addr{}, 0, &InputError{Msg: fmt.Sprintf("%s %q: want IP:PORT or [IPv6]:PORT", what, s)}
}

// lookup answers /v1/lookup with the graph's own elements: the hash of
// its flow hasher, the pick of its selector, each worker's flow tables.
func lookup(ctx context.Context, snap *snapshot.Snapshot, workers []*pipeline.Instance, q map[string][]string) (Lookup, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	out := Lookup{Proto: get("proto"), Src: get("src"), Dst: get("dst"), Workers: []LookupWorker{}}
	f, err := FlowOf(out.Proto, out.Src, out.Dst)
	if err != nil {
		return out, err
	}
	if len(workers) == 0 {
		return out, fmt.Errorf("no worker runs")
	}
	var hasher pipeline.FlowHasher
	var sel pipeline.FlowSelector
	for _, el := range workers[0].Elements() {
		if h, ok := el.(pipeline.FlowHasher); ok && hasher == nil {
			hasher = h
		}
		if s, ok := el.(pipeline.FlowSelector); ok && sel == nil {
			sel = s
		}
	}
	if hasher == nil || sel == nil {
		return out, &InputError{Msg: "the running pipeline has no flow hasher (Parse5Tuple) or no backend selector (MaglevSelect) to ask"}
	}
	hash := hasher.FlowHash(&f)
	out.Hash = fmt.Sprintf("%#016x", hash)
	out.Selected = sel.SelectFlow(&f, hash)
	if out.Selected.VIP == "" {
		out.NoVIP = whyNoVIP(snap, &f)
	}
	held, who, err := trackers(ctx, workers, func(ctx context.Context, ft pipeline.FlowTracker) (pipeline.TrackedFlow, error) {
		return ft.TrackedFlow(ctx, &f, hash)
	})
	if err != nil {
		return out, err
	}
	out.Backend = out.Selected.Backend
	for i, h := range held {
		out.Workers = append(out.Workers, LookupWorker{Worker: who[i].Worker, Element: who[i].Element, TrackedFlow: h})
		if h.Held && !out.Tracked {
			out.Backend, out.Tracked = h.Backend, true
		}
	}
	return out, nil
}

// whyNoVIP explains a flow that matches no VIP: no VIP has its address,
// or the VIPs there serve other protocols or ports.
func whyNoVIP(snap *snapshot.Snapshot, f *pipeline.Flow) string {
	dst := netip.AddrFrom16(f.Dst).Unmap()
	var there []string
	for i := range snap.VIPs {
		v := &snap.VIPs[i]
		if v.Addr == dst {
			ports := "all ports"
			if len(v.Ports) > 0 {
				ports = "port " + strings.Trim(fmt.Sprint(v.Ports), "[]")
			}
			there = append(there, fmt.Sprintf("%s (%s %s)", v.Name, protoName(v.Proto), ports))
		}
	}
	if len(there) == 0 {
		return fmt.Sprintf("no VIP has address %s", dst)
	}
	why := fmt.Sprintf("%s is served only as %s: not protocol %s port %d", dst, strings.Join(there, ", "), protoName(f.Proto), f.DstPort)
	// A reply to a backend's outbound connection is no new flow: say
	// whose range its port is in, where SNATReturn sends it.
	if i, ok := snap.SNATVIP(&f.Dst); ok {
		v := &snap.VIPs[i]
		if id := v.SNAT.Owner(f.DstPort); id != snapshot.NoReal && (v.Proto == 0 || v.Proto == f.Proto) {
			why += fmt.Sprintf("; port %d is in backend %s's SNAT range %s of VIP %s, where SNATReturn sends replies to its outbound connections",
				f.DstPort, snap.Reals.At(id).Backend, v.SNAT.Text(id), v.Name)
		}
	}
	return why
}

// affected counts, per VIP, the established flows a plan moves off their
// backend: all of a removed VIP's, and those of each backend the VIP
// loses. A drained backend keeps its flows, a readdressed one takes them
// to its new address: neither is counted.
func affected(p *control.Plan, flows []pipeline.FlowCount) []AffectedFlows {
	out := []AffectedFlows{}
	if p == nil {
		return out
	}
	for _, v := range p.VIPs {
		gone := map[string]bool{}
		for _, b := range v.Backends {
			if b.Action == control.ActionRemove {
				gone[b.Name] = true
			}
		}
		var n uint64
		for _, fc := range flows {
			if fc.VIP == v.Name && (v.Action == control.ActionRemove || gone[fc.Backend]) {
				n += fc.Flows
			}
		}
		if n > 0 {
			out = append(out, AffectedFlows{VIP: v.Name, Flows: n})
		}
	}
	return out
}
