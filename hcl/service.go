package hcl

import (
	"encoding/json"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// vipBody and backendBody are the bodies of vip and backend blocks as
// gohcl decodes them. Every attribute is optional here: which are required
// is control.Config.Validate's to say.
type vipBody struct {
	Address   string   `hcl:"address,optional"`
	Protocol  string   `hcl:"protocol,optional"`
	Ports     []uint16 `hcl:"ports,optional"`
	Pool      string   `hcl:"pool,optional"`
	TableSize uint32   `hcl:"table_size,optional"`
}

type backendBody struct {
	Address string `hcl:"address,optional"`
	Weight  uint32 `hcl:"weight,optional"`
	Drain   bool   `hcl:"drain,optional"`
}

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
	vipSchema, _     = gohcl.ImpliedBodySchema(&vipBody{})
	backendSchema, _ = gohcl.ImpliedBodySchema(&backendBody{})
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
	l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &l.out.Service.HashSeed))
}

// decodeService decodes the vip and pool blocks and validates the result as
// a whole with control.Config.Validate. This package checks only that each
// value fits its Go type (an address parses, a port fits 16 bits); the
// meaning (protocol names, port 0, prime table sizes, weight bounds, missing
// attributes, pool references and duplicate names) is Validate's, so that
// configuration from plugins gets the same checks.
func (l *loader) decodeService(vips, pools []*hcl.Block) {
	// reported holds the attributes already found invalid; Validate's
	// errors there would repeat them.
	reported := map[pipeline.Range]bool{}
	svc := &l.out.Service
	for _, b := range vips {
		vb := vipBody{Protocol: "tcp"}
		l.decodeBody(b.Body, &vb, "A vip block", vipSchema, reported)
		v := control.VIP{
			Name: b.Labels[0], Protocol: vb.Protocol, Pool: vb.Pool, Ports: vb.Ports, TableSize: vb.TableSize,
			Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body),
		}
		v.Address = l.address(b.Body, vb.Address, reported)
		svc.VIPs = append(svc.VIPs, v)
	}
	for _, b := range pools {
		content, diags := b.Body.Content(poolSchema)
		l.diags = append(l.diags, withSchema(diags, "A pool block", poolSchema)...)
		p := control.Pool{Name: b.Labels[0], Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
		if a, ok := content.Attributes["pools"]; ok && !l.add(gohcl.DecodeExpression(a.Expr, l.ctx, &p.Pools)) {
			reported[toRange(a.Range)] = true
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
	for _, d := range FromErrors(dropReported(svc.Validate(), reported)) {
		l.diags = append(l.diags, d)
	}
}

func (l *loader) decodeBackend(b *hcl.Block, reported map[pipeline.Range]bool) control.Backend {
	bb := backendBody{Weight: 1}
	l.decodeBody(b.Body, &bb, "A backend block", backendSchema, reported)
	return control.Backend{
		Name: b.Labels[0], Weight: bb.Weight, Drain: bb.Drain,
		Address: l.address(b.Body, bb.Address, reported),
		Range:   toRange(b.DefRange), AttrRange: attrRanges(b.Body),
	}
}

func (l *loader) decodeHealthCheck(b *hcl.Block) control.HealthCheck {
	var hb healthCheckBody
	l.add(gohcl.DecodeBody(b.Body, l.ctx, &hb))
	hc := control.HealthCheck{Method: b.Labels[0], Rise: hb.Rise, Fall: hb.Fall,
		Range: toRange(b.DefRange), AttrRange: attrRanges(b.Body)}
	attrs := b.Body.(*hclsyntax.Body).Attributes
	duration := func(name, s string) time.Duration {
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			l.errorf(attrs[name].Expr.Range(), "Invalid duration",
				"%s must be a positive duration such as \"2s\" or \"500ms\", not %q.", name, s)
		}
		return d
	}
	hc.Interval = duration("interval", hb.Interval)
	hc.Timeout = duration("timeout", hb.Timeout)
	if hb.Port != nil {
		if *hb.Port < 1 || *hb.Port > 65535 {
			l.errorf(attrs["port"].Expr.Range(), "Invalid port", "port must be a number from 1 to 65535, not %d.", *hb.Port)
		}
		hc.Port = uint16(*hb.Port)
	}
	if hb.Params != nil {
		hc.Params = l.constants(hb.Params)
	}
	return hc
}

// decodeBody decodes body into v with gohcl and records in reported the
// attributes that have errors.
func (l *loader) decodeBody(body hcl.Body, v any, what string, schema *hcl.BodySchema, reported map[pipeline.Range]bool) {
	diags := gohcl.DecodeBody(body, l.ctx, v)
	for _, a := range body.(*hclsyntax.Body).Attributes {
		for _, d := range diags {
			if d.Severity == hcl.DiagError && d.Subject != nil && contains(a.SrcRange, *d.Subject) {
				reported[toRange(a.SrcRange)] = true
			}
		}
	}
	l.add(withSchema(diags, what, schema))
}

// address parses the address attribute of body, whose value is s, unless
// it is unset or already reported.
func (l *loader) address(body hcl.Body, s string, reported map[pipeline.Range]bool) netip.Addr {
	a, ok := body.(*hclsyntax.Body).Attributes["address"]
	if !ok || reported[toRange(a.SrcRange)] {
		return netip.Addr{}
	}
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		l.errorf(a.Expr.Range(), "Invalid address",
			"%q is not an IP address; write an IPv4 or IPv6 address such as \"192.0.2.10\" or \"2001:db8::10\", without a prefix length or port.", s)
	case addr.Zone() != "":
		l.errorf(a.Expr.Range(), "Invalid address",
			"%q has an IPv6 zone; write the address without %%%s.", s, addr.Zone())
	default:
		return addr.Unmap()
	}
	reported[toRange(a.SrcRange)] = true
	return netip.Addr{}
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

func attrRanges(body hcl.Body) map[string]pipeline.Range {
	attrs := body.(*hclsyntax.Body).Attributes
	m := make(map[string]pipeline.Range, len(attrs))
	for name, a := range attrs {
		m[name] = toRange(a.SrcRange)
	}
	return m
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
