package hcl

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// healthCheckBody is a pool's health_check "<method>" block: the
// scheduler's settings and the port, and every other attribute a parameter
// of the method (path, expect_status, ...), handed to its prober as JSON.
type healthCheckBody struct {
	Interval string   `hcl:"interval,optional"`
	Timeout  string   `hcl:"timeout,optional"`
	Rise     int      `hcl:"rise,optional"`
	Fall     int      `hcl:"fall,optional"`
	Port     *int     `hcl:"port,optional"`
	Params   hcl.Body `hcl:",remain"`
}

var (
	// The bodies of vip and backend blocks. Every attribute is optional
	// here: which are required is control.Config.Validate's to say.
	vipSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "address"}, {Name: "pool"}, {Name: "ports"}, {Name: "protocol"}, {Name: "shards"}, {Name: "snat_ports"}, {Name: "table_size"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "announce", LabelNames: []string{"name"}}},
	}
	backendSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address"}, {Name: "drain"}, {Name: "weight"},
	}}
	// A pool's backends are decoded one by one, so that each keeps its own
	// block ranges for control.Config.Validate's diagnostics.
	poolSchema = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "pools"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "backend", LabelNames: []string{"name"}},
			{Type: "health_check", LabelNames: []string{"method"}},
		},
	}
)

func (l *loader) decodeHashSeed(a *hcl.Attribute) {
	if a == nil {
		l.diags = append(l.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "hash_seed not set",
			Detail:   "Every node must use the same flow hash seed, and it defaults to 0; set hash_seed to the same number on every node of the fleet, so that a flow keeps its backend when ECMP moves it to another node.",
			Subject:  l.body.MissingItemRange().Ptr(),
		})
		return
	}
	l.out.HashSeedRange = toRange(a.Range)
	l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &l.out.Service.HashSeed))
}

// decodeShards decodes the top-level shard_names (the fleet's shards, a
// whole list: where it is set is what a diagnostic names) and shards (this
// node's, item by item).
func (l *loader) decodeShards(names *hcl.Attribute) {
	svc := &l.out.Service
	if names != nil {
		svc.ShardNamesRange = toRange(names.Range)
		svc.ShardNames, _ = l.shards(l.body, "shard_names", func() string { return "The top level" })
	}
	svc.Shards, svc.ShardRanges = l.shards(l.body, "shards", func() string { return "This node" })
}

// checkSnapshot runs the elements' snapshot checks (snapshot.Checker:
// NAT's endpoints that serve two VIP endpoints, FullNAT's one worker)
// over the snapshot this file makes, and reports at the element what
// starting it would refuse. With workers = 0 the daemon picks one worker
// per RX queue, which may be one: the problem is then a warning. It runs
// on a file without errors only, and builds the snapshot (its Maglev
// tables) only for a graph with such an element.
func (l *loader) checkSnapshot() {
	if l.out.Graph == nil || l.diags.HasErrors() {
		return
	}
	var s *snapshot.Snapshot
	for d, el := range l.out.Graph.Probe {
		c, ok := el.(snapshot.Checker)
		if !ok {
			continue
		}
		if s == nil {
			var err error
			if s, err = control.SnapshotOf(&l.out.Service); err != nil {
				return // what is wrong with the service is reported where it is
			}
		}
		err := c.CheckSnapshot(s, l.out.Workers)
		if err == nil {
			continue
		}
		diag := &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Refused at start",
			Detail:   fmt.Sprintf("While checking `%s` (%s) with this file's VIPs and pools: %s.", d.Name, d.Type, strings.TrimSuffix(err.Error(), ".")),
			Subject:  toHCLRange(d.Range).Ptr(),
		}
		if l.out.Workers == 0 {
			diag.Severity, diag.Summary = hcl.DiagWarning, "Refused at start with several workers"
		}
		l.diags = append(l.diags, diag)
	}
}

// checkBackends runs the elements' backend checks
// (pipeline.BackendChecker: DirectRoute's segments) over every backend
// this node serves, and reports a backend out of an element's reach at its
// address. It runs on a file without errors only, whose graph and pools
// are whole.
func (l *loader) checkBackends() {
	if l.out.Graph == nil || l.diags.HasErrors() {
		return
	}
	checks := l.out.Graph.BackendChecks()
	if len(checks) == 0 {
		return
	}
	for _, b := range l.out.Service.ServedBackends() {
		for _, c := range checks {
			if err := c.Check(b.Address); err != nil {
				l.errorf(toHCLRange(b.AttrRange.Or("address", b.Range)), "Backend out of reach", "While checking `%s` (%s): backend %q (%s) %s.",
					c.Element, c.Type, b.Name, b.Address, strings.TrimSuffix(err.Error(), "."))
			}
		}
	}
}

// decodeService decodes the vip and pool blocks and validates the result as
// a whole with control.Config.Validate. This package checks only that each
// value fits its Go type (an address parses, a port fits 16 bits); the
// meaning (protocol names, port 0, prime table sizes, weight bounds, missing
// attributes, pool references and duplicate names) is Validate's, so that
// configuration from plugins gets the same checks.
//
// The main file's blocks are decoded here; each fragment's are decoded
// alone (decodeFragment, perhaps on another core or taken from a Cache)
// and appended after them, in the order of the sources.
func (l *loader) decodeService(vips, pools []*hcl.Block, frags []*fragment) {
	// reported holds the attributes already found invalid; Validate's
	// errors there would repeat them.
	reported := map[pipeline.Range]bool{}
	l.decodeMainService(vips, pools, reported)
	svc := &l.out.Service
	nv, np := len(svc.VIPs), len(svc.Pools)
	for _, fr := range frags {
		nv, np = nv+len(fr.decoded.vips), np+len(fr.decoded.pools)
	}
	svc.VIPs, svc.Pools = slices.Grow(svc.VIPs, nv-len(svc.VIPs)), slices.Grow(svc.Pools, np-len(svc.Pools))
	l.checks = checkBlocks(l.vips, l.pools)
	for _, fr := range frags {
		d := fr.decoded
		svc.VIPs = append(svc.VIPs, d.vips...)
		svc.Pools = append(svc.Pools, d.pools...)
		for _, diag := range d.diags {
			copied := *diag
			l.diags = append(l.diags, &copied)
		}
		for r := range d.reported {
			reported[r] = true
		}
		l.poisonRanges = append(l.poisonRanges, d.poison...)
		l.checks = append(l.checks, d.checks...)
	}
	sortSpans(l.poisonRanges)
	var errs pipeline.Errors
	if l.cache != nil {
		errs = l.cache.check.Validate(svc)
	} else {
		errs = svc.Validate()
	}
	for _, d := range FromErrors(dropReported(errs, reported)) {
		l.diags = append(l.diags, d)
	}
}

// poolRun is how many of the main file's pools a loader decodes at a time
// (decodeMainService); a variable for tests.
var poolRun = 50

// decodeMainService decodes the main file's vip and pool blocks as
// decodeServiceBlocks does, the pools on every core: in runs of poolRun,
// each by a loader of its own in the main file's context (as a fragment's
// blocks are), gathered in order, so that the results and the
// diagnostics are one loader's. A configuration of one file can have
// thousands of pools.
func (l *loader) decodeMainService(vips, pools []*hcl.Block, reported map[pipeline.Range]bool) {
	l.decodeServiceBlocks(vips, nil, reported)
	type run struct {
		sub      *loader
		reported map[pipeline.Range]bool
	}
	runs := make([]run, (len(pools)+poolRun-1)/poolRun)
	parallel(len(runs), func(i int) {
		r := run{l.sub(), map[pipeline.Range]bool{}}
		// Diagnostics inside expressions that refer to a name that
		// failed are dropped as l drops them.
		r.sub.poisonRanges = l.poisonRanges
		r.sub.decodeServiceBlocks(nil, pools[i*poolRun:min(len(pools), (i+1)*poolRun)], r.reported)
		runs[i] = r
	})
	svc := &l.out.Service
	for _, r := range runs {
		svc.Pools = append(svc.Pools, r.sub.out.Service.Pools...)
		l.diags = append(l.diags, r.sub.diags...)
		maps.Copy(reported, r.reported)
	}
}

// announcerNames are the names of the announce blocks, sorted, for the
// announce blocks of VIPs.
func announcerNames(announcers []*hcl.Block) []string {
	var names []string
	for _, b := range announcers {
		names = append(names, b.Labels[0])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// decodeServiceBlocks decodes vip and pool blocks into l.out.Service,
// recording in reported the attributes found invalid.
func (l *loader) decodeServiceBlocks(vips, pools []*hcl.Block, reported map[pipeline.Range]bool) {
	svc := &l.out.Service
	names := l.announcers
	for _, b := range vips {
		v := control.VIP{Name: b.Labels[0], Protocol: "tcp", Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
		var address string
		l.decodeBody(b.Body, map[string]any{"address": &address, "protocol": &v.Protocol, "pool": &v.Pool, "table_size": &v.TableSize, "snat_ports": &v.SNATPorts},
			"A vip block", vipSchema, reported)
		v.Address = l.address(b.Body, address, reported)
		v.Ports, v.PortRanges = l.ports(v.Name, b.Body)
		v.Shards, v.ShardRanges = l.shards(b.Body, "shards", func() string { return fmt.Sprintf("VIP %q", v.Name) })
		v.Announce = l.vipAnnounce(v.Name, b.Body, names)
		svc.VIPs = append(svc.VIPs, v)
	}
	for _, b := range pools {
		content, diags := content(b.Body, poolSchema)
		l.diags = append(l.diags, withSchema(diags, "A pool block", poolSchema)...)
		p := control.Pool{Name: b.Labels[0], Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
		if a, ok := content.Attributes["pools"]; ok && !l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &p.Pools)) {
			reported[toRange(a.Range)] = true
		}
		backends := 0
		for _, bb := range content.Blocks {
			if bb.Type == "backend" {
				backends++
			}
		}
		if backends > 0 {
			p.Backends = make([]control.Backend, 0, backends)
		}
		for _, bb := range content.Blocks {
			switch bb.Type {
			case "backend":
				p.Backends = append(p.Backends, l.decodeBackend(bb, reported))
			case "health_check":
				p.HealthChecks = append(p.HealthChecks, l.decodeHealthCheck(bb))
			}
		}
		svc.Pools = append(svc.Pools, p)
	}
}

// vipAnnounce decodes a vip block's announce blocks: each names one of the
// announcers (the top-level announce blocks) and holds its parameters for
// this VIP, evaluated to constants as a health check's. One block per
// announcer is control.Config.Validate's check.
func (l *loader) vipAnnounce(vip string, body hcl.Body, announcers []string) []control.Announce {
	var out []control.Announce
	for _, b := range blocksOf(body, "announce", vipSchema) {
		name := b.Labels[0]
		if !slices.Contains(announcers, name) {
			declared := "no route announcer is declared; declare one with a top-level announce block"
			if len(announcers) > 0 {
				declared = "the declared route announcers are " + strings.Join(announcers, ", ")
			}
			l.errorf(b.LabelRanges[0], "Unknown route announcer",
				"VIP %q has parameters for the route announcer %q, which is not declared%s: %s.", vip, name, pipeline.Suggest(name, announcers), declared)
			continue
		}
		attrs := nestedRanges(b.Body, attrRanges(b.Body))
		out = append(out, control.Announce{Announcer: name, Params: l.constants(b.Body),
			Range: toRange(b.DefRange), AttrRange: attrs})
	}
	return out
}

func (l *loader) decodeBackend(b *hcl.Block, reported map[pipeline.Range]bool) control.Backend {
	be := control.Backend{Name: b.Labels[0], Weight: 1, Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
	var address string
	if body, ok := b.Body.(*hclsyntax.Body); !ok || !literalBackend(body, &be, &address) {
		address, be.Weight, be.Drain = l.decodeBackendBody(b.Body, be.Weight, reported)
	}
	be.Address = l.address(b.Body, address, reported)
	return be
}

// decodeBackendBody decodes a backend's body with decodeBody, whose map of
// pointers makes what they point to escape: here, and not in
// decodeBackend's way for literals.
func (l *loader) decodeBackendBody(body hcl.Body, weight uint32, reported map[pipeline.Range]bool) (address string, _ uint32, drain bool) {
	l.decodeBody(body, map[string]any{"address": &address, "weight": &weight, "drain": &drain},
		"A backend block", backendSchema, reported)
	return address, weight, drain
}

// literalBackend decodes a backend's body as decodeBody would, when that
// is only reading literals that fit (a string address, a whole weight of
// 32 bits, a bool drain), which is what almost every one of a
// configuration's thousands of backends holds, at a fraction of gohcl's
// cost. It reports false, having set nothing, for anything else:
// decodeBody then decodes the body and says what is wrong.
func literalBackend(body *hclsyntax.Body, be *control.Backend, address *string) bool {
	if len(body.Blocks) > 0 {
		return false
	}
	var addr string
	weight, drain := be.Weight, be.Drain
	for name, a := range body.Attributes {
		var v cty.Value
		switch e := a.Expr.(type) {
		case *hclsyntax.LiteralValueExpr:
			v = e.Val
		case *hclsyntax.TemplateExpr:
			if len(e.Parts) != 1 {
				return false
			}
			lit, ok := e.Parts[0].(*hclsyntax.LiteralValueExpr)
			if !ok {
				return false
			}
			v = lit.Val
		default:
			return false
		}
		if v.IsNull() || !v.IsKnown() || v.IsMarked() {
			return false
		}
		switch {
		case name == "address" && v.Type() == cty.String:
			addr = v.AsString()
		case name == "weight" && v.Type() == cty.Number:
			bf := v.AsBigFloat()
			n, acc := bf.Uint64()
			if acc != big.Exact || !bf.IsInt() || n > math.MaxUint32 {
				return false
			}
			weight = uint32(n)
		case name == "drain" && v.Type() == cty.Bool:
			drain = v.True()
		default:
			return false
		}
	}
	*address, be.Weight, be.Drain = addr, weight, drain
	return true
}

func (l *loader) decodeHealthCheck(b *hcl.Block) control.HealthCheck {
	var hb healthCheckBody
	l.add(gohcl.DecodeBody(b.Body, l.ctx, &hb))
	hc := control.HealthCheck{Method: b.Labels[0], Rise: hb.Rise, Fall: hb.Fall,
		Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
	duration := func(name, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			expr, _, _ := attr(b.Body, name)
			l.errorf(expr.Range(), "Invalid duration",
				"%s must be a positive duration such as \"2s\" or \"500ms\", not %q.", name, s)
		}
		return d
	}
	hc.Interval = duration("interval", hb.Interval)
	hc.Timeout = duration("timeout", hb.Timeout)
	if hb.Port != nil {
		if *hb.Port < 1 || *hb.Port > 65535 {
			expr, _, _ := attr(b.Body, "port")
			l.errorf(expr.Range(), "Invalid port", "port must be a number from 1 to 65535, not %d.", *hb.Port)
		}
		hc.Port = uint16(*hb.Port)
	}
	if hb.Params != nil {
		hc.Params = l.constants(hb.Params)
	}
	return hc
}

// decodeBody decodes the attributes of body that schema lists, each into
// the pointer fields holds under its name (the others are the caller's),
// as gohcl.DecodeBody would, without its reflection on every block of a
// file with thousands; and records in reported the attributes that have
// errors.
func (l *loader) decodeBody(body hcl.Body, fields map[string]any, what string, schema *hcl.BodySchema, reported map[pipeline.Range]bool) {
	content, diags := content(body, schema)
	for name, a := range content.Attributes {
		p, ok := fields[name]
		if !ok {
			continue
		}
		if _, unsigned := p.(*uint32); unsigned {
			if d := notWhole(a.Expr, l.ctx); d != nil {
				diags = append(diags, d)
				continue
			}
		}
		diags = append(diags, gohcl.DecodeExpression(a.Expr, l.ctx, p)...)
	}
	var attrs spans
	eachAttr(body, func(_ string, r hcl.Range, _ hcl.Expression) { attrs = append(attrs, r) })
	sortSpans(attrs)
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Subject != nil {
			if i := attrs.containing(*d.Subject); i >= 0 {
				reported[toRange(attrs[i])] = true
			}
		}
	}
	l.add(withSchema(diags, what, schema))
}

// notWhole reports a number with a fraction for an unsigned attribute.
// gohcl would truncate it: cty asks big.Float.Uint64 whether the
// conversion was exact, and Go's answer for 1.5 is Exact, so a weight of
// 1.5 became 1 without a word.
func notWhole(expr hcl.Expression, ctx *hcl.EvalContext) *hcl.Diagnostic {
	v, diags := expr.Value(ctx)
	if diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() || v.IsMarked() || v.Type() != cty.Number || v.AsBigFloat().IsInt() {
		return nil
	}
	r := expr.Range()
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Unsuitable value type", Subject: &r, Expression: expr, EvalContext: ctx,
		Detail: fmt.Sprintf("Unsuitable value: %s is not a whole number; write a whole number from 0 to %d.", v.AsBigFloat().Text('g', -1), uint32(math.MaxUint32))}
}

// address parses the address attribute of body, whose value is s, unless
// it is unset or already reported.
func (l *loader) address(body hcl.Body, s string, reported map[pipeline.Range]bool) netip.Addr {
	expr, whole, ok := attr(body, "address")
	if !ok || reported[toRange(whole)] {
		return netip.Addr{}
	}
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		l.errorf(expr.Range(), "Invalid address",
			"%q is not an IP address; write an IPv4 or IPv6 address such as \"192.0.2.10\" or \"2001:db8::10\", without a prefix length or port.", s)
	case addr.Zone() != "":
		l.errorf(expr.Range(), "Invalid address",
			"%q has an IPv6 zone; write the address without %%%s.", s, addr.Zone())
	default:
		return addr.Unmap()
	}
	reported[toRange(whole)] = true
	return netip.Addr{}
}

// ports decodes a vip's ports attribute item by item (listItems), so that
// an item that is not a port is reported where it is. Port 0 fits: what it
// means is control.Config.Validate's to say, at the same range.
func (l *loader) ports(vip string, body hcl.Body) ([]uint16, []pipeline.Range) {
	items, ok := l.listItems(body, "ports", func() string { return fmt.Sprintf("VIP %q has ports", vip) }, "a list of port numbers such as [80, 443]")
	if !ok {
		return nil, nil
	}
	ports := make([]uint16, 0, len(items))
	ranges := make([]pipeline.Range, 0, len(items))
	for _, it := range items {
		p, ok := port(it.v)
		if !ok {
			l.errorf(it.r, "Invalid port", "VIP %q lists %s, which is not a port; ports go from 1 to 65535 (leave ports out to match every port).", vip, describe(it.v))
			continue
		}
		ports = append(ports, p)
		ranges = append(ranges, toRange(it.r))
	}
	return ports, ranges
}

// shards decodes the attribute name of body (shards, the top level's or a
// vip's, or shard_names), a list of shard names, item by item as ports;
// whose says whose it is for diagnostics. Which names exist is
// control.Config.Validate's to say. whose is called for a diagnostic only:
// most VIPs have none, and formatting their names would cost a load of
// thousands.
func (l *loader) shards(body hcl.Body, name string, whose func() string) ([]string, []pipeline.Range) {
	items, ok := l.listItems(body, name, func() string { return whose() + " has " + name }, `a list of shard names such as ["a"]`)
	if !ok {
		return nil, nil
	}
	names := make([]string, 0, len(items))
	ranges := make([]pipeline.Range, 0, len(items))
	for _, it := range items {
		if it.v.IsNull() || it.v.Type() != cty.String || it.v.AsString() == "" {
			l.errorf(it.r, "Invalid shard", "%s lists %s in %s, which is not a shard name; write shard names as strings, such as \"a\".", whose(), describe(it.v), name)
			continue
		}
		names = append(names, it.v.AsString())
		ranges = append(ranges, toRange(it.r))
	}
	return names, ranges
}

// listItem is one item of a list attribute and its range.
type listItem struct {
	v cty.Value
	r hcl.Range
}

// listItems evaluates the list attribute name of body item by item, each
// with its own range when the list is written out (the whole expression's
// otherwise), and a long list in time linear in its length (gohcl's
// conversion of a tuple to a slice is quadratic in go-cty). Items whose
// value is not known (echoes of a failed reference) are left out; ok is
// false when the attribute is unset or was reported. has and want word
// the diagnostic for a value that is not a list (has called only then).
func (l *loader) listItems(body hcl.Body, name string, has func() string, want string) (items []listItem, ok bool) {
	expr, _, ok := attr(body, name)
	if !ok {
		return nil, false
	}
	if tup, ok := expr.(*hclsyntax.TupleConsExpr); ok {
		items = make([]listItem, 0, len(tup.Exprs))
		for _, e := range tup.Exprs {
			v, diags := e.Value(l.ctx)
			if l.add(diags) && v.IsWhollyKnown() {
				items = append(items, listItem{v, e.Range()})
			}
		}
		return items, true
	}
	v, diags := expr.Value(l.ctx)
	r := expr.Range()
	switch {
	case !l.add(diags) || !v.IsKnown() || v.IsNull():
		// Reported, an echo of a failed reference, or unset.
		return nil, false
	case !v.CanIterateElements() || v.Type().IsMapType() || v.Type().IsObjectType():
		l.errorf(r, "Invalid "+name, "%s of type %s; write %s.", has(), v.Type().FriendlyName(), want)
		return nil, false
	}
	items = make([]listItem, 0, v.LengthInt())
	for it := v.ElementIterator(); it.Next(); {
		if _, ev := it.Element(); ev.IsWhollyKnown() {
			items = append(items, listItem{ev, r})
		}
	}
	return items, true
}

// port converts v to a port number as HCL converts values (the string "80"
// is 80), if it is a whole number from 0 to 65535.
func port(v cty.Value) (uint16, bool) {
	if v.IsNull() {
		return 0, false
	}
	n, err := convert.Convert(v, cty.Number)
	if err != nil {
		return 0, false
	}
	i, acc := n.AsBigFloat().Int64()
	if acc != big.Exact || i < 0 || i > 65535 {
		return 0, false
	}
	return uint16(i), true
}

// describe writes a value for a diagnostic: numbers and strings as
// written, anything else by its type.
func describe(v cty.Value) string {
	switch {
	case v.IsNull():
		return "null"
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('g', 10)
	case v.Type() == cty.String:
		return fmt.Sprintf("%q", v.AsString())
	}
	return "a " + v.Type().FriendlyName()
}

// withSchema adds what a block takes to "Unsupported argument" and
// "Unsupported block type" diagnostics.
func withSchema(diags hcl.Diagnostics, what string, schema *hcl.BodySchema) hcl.Diagnostics {
	for _, d := range diags {
		if d.Summary == "Unsupported argument" || d.Summary == "Unsupported block type" {
			d.Detail = sentence(d.Detail) + " " + what + takes(schema)
		}
	}
	return diags
}

// takes returns " takes: a, b blocks." for what schema accepts.
func takes(schema *hcl.BodySchema) string {
	var names []string
	if schema != nil {
		for _, a := range schema.Attributes {
			names = append(names, a.Name)
		}
		for _, b := range schema.Blocks {
			names = append(names, b.Type+" blocks")
		}
	}
	if len(names) == 0 {
		return " takes no attributes."
	}
	return " takes: " + strings.Join(names, ", ") + "."
}

func attrRanges(body hcl.Body) pipeline.AttrRanges {
	var a pipeline.AttrRanges
	if b, ok := body.(*hclsyntax.Body); ok {
		a = make(pipeline.AttrRanges, 0, len(b.Attributes))
	}
	eachAttr(body, func(name string, r hcl.Range, _ hcl.Expression) {
		a = append(a, pipeline.AttrRange{Name: name, Range: toRange(r)})
	})
	return inOrder(a)
}

// inOrder sorts a in the order the source writes it: the body's attributes
// come from a map, in random order, and two loads of the same text must
// give equal configurations.
func inOrder(a pipeline.AttrRanges) pipeline.AttrRanges {
	slices.SortFunc(a, func(x, y pipeline.AttrRange) int {
		return cmp.Or(cmp.Compare(x.Range.Start.Byte, y.Range.Start.Byte), strings.Compare(x.Name, y.Name))
	})
	return a
}

func dropReported(errs pipeline.Errors, reported map[pipeline.Range]bool) pipeline.Errors {
	var out pipeline.Errors
	for _, e := range errs {
		if !reported[e.Range] {
			out = append(out, e)
		}
	}
	return out
}

// constants evaluates every attribute of body (a block's remaining,
// plugin-defined attributes) to a JSON constant, the form plugins receive:
// numbers, strings, bools, lists and objects as JSON has them.
func (l *loader) constants(body hcl.Body) map[string]json.RawMessage {
	attrs, diags := body.JustAttributes()
	l.add(diags)
	var out map[string]json.RawMessage
	for name, a := range attrs {
		v, diags := a.Expr.Value(l.ctx)
		if !l.add(diags) {
			continue
		}
		if !v.IsWhollyKnown() || v.IsNull() {
			l.errorf(a.Expr.Range(), "Invalid plugin parameter", "%s must be a constant value, not null.", name)
			continue
		}
		js, err := ctyjson.Marshal(v, v.Type())
		if err != nil {
			l.errorf(a.Expr.Range(), "Invalid plugin parameter", "%s cannot be sent to a plugin: %v.", name, err)
			continue
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		out[name] = js
	}
	return out
}
