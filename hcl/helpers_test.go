package hcl

import (
	"testing"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/xlbproject/xlb/pipeline"
)

func typeOf(name string) cty.Type {
	switch name {
	case "string":
		return cty.String
	case "number":
		return cty.Number
	case "map":
		return cty.Map(cty.Number)
	}
	return cty.DynamicPseudoType
}

func jsonOf(t *testing.T, v cty.Value) string {
	t.Helper()
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newOf(t *testing.T, typ string) pipeline.Element {
	t.Helper()
	et, ok := pipeline.Lookup(typ)
	if !ok {
		t.Fatalf("no element type %s", typ)
	}
	return et.New()
}

// attrAt is where a sets name, the zero Range when it does not.
func attrAt(a pipeline.AttrRanges, name string) pipeline.Range {
	r, _ := a.Get(name)
	return r
}
