package hcl

import (
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// defaultGraph is xlb's default graph, the one every example, test and
// benchmark of the full data path runs, as connect chains over the
// instance names rx, parse, ct, sel, encap, tx and drop. Written once here;
// files use it as default_graph().
var defaultGraph = []string{
	"rx -> parse -> ct",
	"ct.hit -> encap -> tx",
	"encap.icmp -> tx",
	"ct.miss -> sel -> ct.learn",
	"parse.bad -> drop",
	"sel.nobackend -> drop",
	"encap.bad -> drop",
}

// defaultGraphFunc is default_graph(): the default graph's chains, a list
// of strings for connect (`connect = default_graph()`, or
// `concat(default_graph(), [...])` to add chains).
var defaultGraphFunc = function.New(&function.Spec{
	Description: "The chains of xlb's default graph, for connect.",
	Type:        function.StaticReturnType(cty.List(cty.String)),
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		vs := make([]cty.Value, len(defaultGraph))
		for i, c := range defaultGraph {
			vs[i] = cty.StringVal(c)
		}
		return cty.ListVal(vs), nil
	},
})
