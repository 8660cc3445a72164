package hcl

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/health"
)

// BlockDoc describes a block of the configuration file, for docs/hcl.md
// (internal/hcldoc generates it from Reference, the element registry and
// the built-in plugins' schemas).
type BlockDoc struct {
	Type   string // "" for the file itself
	Labels []string
	Count  string // how many may appear: "exactly one", "any number", ...
	Doc    string
	// Attributes are those the loader takes, in schema order; a block
	// whose body is another schema's (an element's, a plugin's) has only
	// the ones xlbd itself reads, and Doc says whose the others are.
	Attributes []AttrDoc
	Blocks     []BlockDoc
}

// AttrDoc describes one attribute.
type AttrDoc struct {
	Name     string
	Type     string
	Required bool
	Default  string // "" when there is none to state
	Doc      string
}

// docAttr is the documentation of one attribute; the name is the key of
// the map it is in.
type docAttr struct {
	typ      string
	required bool
	def      string
	doc      string
}

// docBlock documents a block: the attributes and nested blocks of its
// schema, keyed by name. Reference fails when a schema has an attribute
// or block that is not documented here, or the other way round, so the
// two cannot drift apart.
type docBlock struct {
	count  string
	doc    string
	schema *hcl.BodySchema
	attrs  map[string]docAttr
	blocks map[string]docBlock
}

var reference = docBlock{
	schema: rootSchema,
	attrs: map[string]docAttr{
		"shard_names": {typ: "list of strings", def: "none", doc: "The fleet's shards (Maglev's VIP sharding; see [docs/cluster.md](cluster.md#vip-sharding)), the same on every node. Every shard that `shards` or a VIP's `shards` names must be one of them: an unknown name is an error at its item, with a did-you-mean."},
		"shards":      {typ: "list of strings", def: "every VIP", doc: "This node's shards (usually `[var.shard]`): it builds tables for, forwards and announces only the VIPs of one of these shards and the VIPs that name none; its XDP program passes packets to the other VIPs to the kernel. A change is a reload like any other. Left out of the config digest, so that nodes of different shards agree on what they share."},
		"hash_seed":   {typ: "number, 0 to 2^64-1", def: "0", doc: "Seeds the flow hash. **Every node of a fleet must use the same value**, so that a flow that ECMP moves to another node keeps its backend. When it is missing the seed is 0 and the load warns (`hash_seed not set`). Like the pipeline block it changes at restart: a reload with another seed applies the rest, keeps the running seed and warns, because ConnTrack finds established flows by their hash."},
	},
	blocks: map[string]docBlock{
		"variable": {count: "any number", doc: "An input value, set by `-var NAME=VALUE`, `XLB_VAR_NAME` or its default; see [Variables](#variables).", schema: variableSchema,
			attrs: map[string]docAttr{
				"default":     {typ: "any constant", doc: "The value when neither `-var` nor the environment sets one; without it the variable is required."},
				"description": {typ: "string", doc: "What the variable is for."},
				"type":        {typ: "type constraint", def: "any", doc: "`string`, `number`, `bool`, `any`, `list(T)`, `set(T)`, `map(T)`, `object({…})`, `tuple([…])`; values are converted to it."},
			}},
		"locals": {count: "any number", doc: "Named expressions, visible as `local.NAME`; any attribute name, each defined once; see [Locals](#locals).", schema: &hcl.BodySchema{}},
		"pipeline": {count: "exactly one", doc: "The packet graph.", schema: pipelineSchema,
			attrs: map[string]docAttr{
				"workers": {typ: "number, 0 to 4096", def: "0", doc: "How many copies of the graph run, each on its own core with its own RX queue and ConnTrack table; 0 lets xlbd choose (one per RX queue)."},
				"connect": {typ: "list of strings", doc: "The connections, as [chains](#chains), or [`default_graph()`](#the-default-graph). Required when there are elements."},
			},
			blocks: map[string]docBlock{
				"element": {count: "any number", doc: "One element instance: TYPE is a registered element type, NAME the instance name used in chains. The body is the type's own configuration; see [Element types](#element-types).", schema: &hcl.BodySchema{}},
			}},
		"vip": {count: "any number", doc: "A virtual service.", schema: vipSchema,
			attrs: map[string]docAttr{
				"address":    {typ: "string, IPv4 or IPv6", required: true, doc: "The service address clients connect to; no prefix length, port or zone. An IPv4-mapped IPv6 address is taken as IPv4."},
				"protocol":   {typ: "`\"tcp\"`, `\"udp\"` or `\"any\"`", def: "`\"tcp\"`", doc: "Which packets the VIP matches."},
				"ports":      {typ: "list of numbers", def: "all ports", doc: "Destination ports, 1 to 65535."},
				"pool":       {typ: "string", required: true, doc: "The pool that serves the VIP."},
				"shards":     {typ: "list of strings", def: "every node", doc: "The shards whose nodes serve the VIP (see the top-level `shards`); each is one of `shard_names`. VIPs that share an address must name the same shards, since nodes announce addresses."},
				"table_size": {typ: "number", def: strconv.Itoa(control.DefaultTableSize), doc: "The Maglev lookup table size M, a prime above the number of backends (ideally 100 times it)."},
				"snat_ports": {typ: "number, 0 to " + strconv.Itoa(control.SNATSpace), def: "0 (no SNAT)", doc: "Gives each backend the VIP reaches a range of this many source ports on the VIP's address, the same on every node, for the connections it opens itself with the VIP as source (SNAT, as Ananta does); replies that reach xlb on a port of a range go to its backend through the [SNATReturn](#snatreturn) element. Needs `ports`; one VIP with SNAT per address; the load fails when the ranges beside the service ports are fewer than the backends. See [docs/modes.md](modes.md#snat)."},
			},
			blocks: map[string]docBlock{
				"announce": {count: "one per announcer", doc: "This VIP's parameters for the route announcer NAME (a top-level [announce](#announce-name) block): its attributes are the announcer's per-VIP parameters (see [Route announcers](#route-announcers)), evaluated to constants and checked by the announcer at their line. An unknown NAME is an error with a did-you-mean. Without the block the VIP is announced all the same, without parameters.", schema: &hcl.BodySchema{}},
			}},
		"pool": {count: "any number", doc: "A set of backends.", schema: poolSchema,
			attrs: map[string]docAttr{
				"pools": {typ: "list of strings", doc: "Other pools whose backends this pool includes (no cycles)."},
			},
			blocks: map[string]docBlock{
				"backend": {count: "any number", doc: "A server. The name is its identity in the Maglev table: unique across all pools and the same on every node.", schema: backendSchema,
					attrs: map[string]docAttr{
						"address": {typ: "string, IPv4 or IPv6", required: true, doc: "Where the backend receives encapsulated packets."},
						"weight":  {typ: "number, 0 to 2^32-1", def: "1", doc: "Relative share of new flows; 0 drains (keeps existing flows, takes no new ones)."},
						"drain":   {typ: "bool", def: "false", doc: "Takes the backend out of new-flow selection whatever its weight."},
					}},
				"health_check": {count: "one per method", doc: "How this pool's own backends are checked (not those of included pools, which their own pool checks) by the health-check method METHOD (see [Health-check methods](#health-check-methods)); every attribute not listed in [health_check](#health_check-method) is a parameter of the method. A backend is healthy only while every method passes.", schema: implied(healthCheckBody{}),
					attrs: map[string]docAttr{
						"interval": {typ: "duration", def: health.DefaultInterval.String(), doc: "Between probes of a backend."},
						"timeout":  {typ: "duration", def: health.DefaultTimeout.String(), doc: "Per probe, at most the interval."},
						"rise":     {typ: "number", def: strconv.Itoa(health.DefaultRise), doc: "Consecutive passes for a down backend to come up."},
						"fall":     {typ: "number", def: strconv.Itoa(health.DefaultFall), doc: "Consecutive failures for an up backend to go down."},
						"port":     {typ: "number, 1 to 65535", def: "the method's own", doc: "The port probed."},
					}},
			}},
		"plugin":   {count: "any number", doc: "The binary that serves the health-check method NAME, and its settings: every attribute not listed here is the plugin's own (see [Health-check methods](#health-check-methods)); see [plugin](#plugin-name).", schema: implied(pluginBody{}), attrs: pluginAttrs(false)},
		"announce": {count: "any number", doc: "A route-announcer plugin and its settings: every attribute not listed here is the announcer's own (see [Route announcers](#route-announcers)); see [announce](#announce-name).", schema: implied(announceBody{}), attrs: pluginAttrs(true)},
		"source":   {count: "any number", doc: "A config-source plugin and its settings: every attribute not listed here is the source's own (see [Config sources](#config-source-plugins)); see [source](#source-name).", schema: implied(pluginBody{}), attrs: pluginAttrs(false)},
	},
}

// pluginAttrs are the attributes xlbd reads in a plugin, announce or
// source block.
func pluginAttrs(announce bool) map[string]docAttr {
	m := map[string]docAttr{
		"path":   {typ: "string", def: "the built-in of that name in `-plugin-dir`", doc: "The plugin binary, relative to the file's directory (never looked up on `$PATH`)."},
		"sha256": {typ: "string, 64 hex digits", doc: "The binary's SHA-256, checked before every launch; needs `path`."},
	}
	if announce {
		m["drain_time"] = docAttr{typ: "duration", def: DefaultDrainTime.String(), doc: "On SIGTERM, the wait between withdrawing every route and stopping the data plane; with several announcers xlbd waits the longest."}
	}
	return m
}

// implied is the schema gohcl decodes v with, less its remain field.
func implied(v any) *hcl.BodySchema {
	s, _ := gohcl.ImpliedBodySchema(v)
	return s
}

// Reference returns the documentation of every block and attribute of the
// file. It fails when a schema and its documentation disagree.
func Reference() (BlockDoc, error) {
	return reference.build("", nil)
}

func (d docBlock) build(typ string, labels []string) (BlockDoc, error) {
	out := BlockDoc{Type: typ, Labels: labels, Count: d.count, Doc: d.doc}
	where := typ
	if where == "" {
		where = "the top level"
	}
	var names []string
	for _, a := range d.schema.Attributes {
		doc, ok := d.attrs[a.Name]
		if !ok {
			return out, fmt.Errorf("hcl reference: attribute %q of %s is not documented", a.Name, where)
		}
		names = append(names, a.Name)
		out.Attributes = append(out.Attributes, AttrDoc{Name: a.Name, Type: doc.typ, Required: doc.required, Default: doc.def, Doc: doc.doc})
	}
	for _, b := range d.schema.Blocks {
		doc, ok := d.blocks[b.Type]
		if !ok {
			return out, fmt.Errorf("hcl reference: block %q of %s is not documented", b.Type, where)
		}
		names = append(names, b.Type)
		nested, err := doc.build(b.Type, b.LabelNames)
		if err != nil {
			return out, err
		}
		out.Blocks = append(out.Blocks, nested)
	}
	for n := range d.attrs {
		if !slices.Contains(names, n) {
			return out, fmt.Errorf("hcl reference: %s documents attribute %q, which it does not take", where, n)
		}
	}
	for n := range d.blocks {
		if !slices.Contains(names, n) {
			return out, fmt.Errorf("hcl reference: %s documents block %q, which it does not take", where, n)
		}
	}
	return out, nil
}
