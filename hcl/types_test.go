package hcl

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/xlbproject/xlb/pipeline"
)

// Element types for these tests, shaped like the built-in ones (a source,
// a parser with a drop port, a two-input table, a selector, sinks), so the
// tests do not depend on the element packages.

type testSource struct {
	File  string `hcl:"file,optional"`
	Count int    `hcl:"count,optional"`
}

func (*testSource) Pull(*pipeline.Batch) error { return io.EOF }

type testParse struct {
	Mode string `hcl:"mode,optional"`
}

func (*testParse) Push(int, *pipeline.Packet) int { return 0 }

type testTable struct {
	Capacity int      `hcl:"capacity,optional"`
	Timeout  string   `hcl:"timeout,optional"`
	Tags     []string `hcl:"tags,optional"`
}

func (*testTable) Push(int, *pipeline.Packet) int { return 0 }

func (t *testTable) Validate() error {
	if t.Capacity <= 0 {
		return &pipeline.AttrError{Attr: "capacity", Msg: "must be greater than 0"}
	}
	return nil
}

type testSelect struct {
	Weight  float64 `hcl:"weight,optional"`
	Enabled bool    `hcl:"enabled,optional"`
	Ports   []int   `hcl:"ports,optional"`
	Small   uint8   `hcl:"small,optional"`
}

func (*testSelect) Push(int, *pipeline.Packet) int { return 0 }

type testSink struct {
	File    string `hcl:"file"`
	KeyFile string `hcl:"key_file,optional"`
	Note    string `hcl:"note,optional"`
}

func (*testSink) Push(int, *pipeline.Packet) int { return pipeline.Consumed }

// testPass passes every packet on, as Counter does: the links of the long
// chains the benchmarks build.
type testPass struct{}

func (*testPass) Push(int, *pipeline.Packet) int { return 0 }

// testReach has GREEncap's ports and reaches the backends in prefix only,
// as DirectRoute reaches those on its interface's segments.
type testReach struct {
	Prefix string `hcl:"prefix,optional"`
}

func (*testReach) Push(int, *pipeline.Packet) int { return 0 }

func (r *testReach) BackendCheck() func(netip.Addr) error {
	p, err := netip.ParsePrefix(r.Prefix)
	if err != nil {
		return nil
	}
	return func(a netip.Addr) error {
		if !p.Contains(a) {
			return fmt.Errorf("is not in %s", p)
		}
		return nil
	}
}

type testDrop struct{}

func (*testDrop) Push(int, *pipeline.Packet) int { return pipeline.Consumed }

func init() {
	pipeline.Register(pipeline.ElementType{Name: "TestSource", Outputs: []string{"out"},
		New: func() pipeline.Element { return &testSource{Count: 1} }})
	pipeline.Register(pipeline.ElementType{Name: "TestParse", Inputs: []string{"in"}, Outputs: []string{"out", "bad"},
		New: func() pipeline.Element { return &testParse{Mode: "strict"} }})
	pipeline.Register(pipeline.ElementType{Name: "TestTable",
		Inputs: []string{"lookup", "learn"}, Outputs: []string{"hit", "miss"}, Routes: [][]int{{0, 1}, {0}},
		New: func() pipeline.Element { return &testTable{Capacity: 1024, Timeout: "30s"} }})
	pipeline.Register(pipeline.ElementType{Name: "TestSelect", Inputs: []string{"in"}, Outputs: []string{"out", "nobackend"},
		New: func() pipeline.Element { return &testSelect{Weight: 1} }})
	pipeline.Register(pipeline.ElementType{Name: "TestSink", Inputs: []string{"in"},
		New: func() pipeline.Element { return &testSink{} }})
	pipeline.Register(pipeline.ElementType{Name: "TestPass", Inputs: []string{"in"}, Outputs: []string{"out"},
		New: func() pipeline.Element { return &testPass{} }})
	// TestEncap has the ports of GREEncap, which the default graph names.
	pipeline.Register(pipeline.ElementType{Name: "TestEncap", Inputs: []string{"in"}, Outputs: []string{"out", "bad", "icmp"},
		New: func() pipeline.Element { return &testPass{} }})
	pipeline.Register(pipeline.ElementType{Name: "TestReach", Inputs: []string{"in"}, Outputs: []string{"out", "bad", "icmp"},
		New: func() pipeline.Element { return &testReach{} }})
	pipeline.Register(pipeline.ElementType{Name: "TestDrop", Inputs: []string{"in"},
		New: func() pipeline.Element { return &testDrop{} }})
}

var (
	_ pipeline.Source    = (*testSource)(nil)
	_ pipeline.Pusher    = (*testParse)(nil)
	_ pipeline.Validator = (*testTable)(nil)
	_ pipeline.Pusher    = (*testSelect)(nil)
	_ pipeline.Pusher    = (*testSink)(nil)
	_ pipeline.Pusher    = (*testPass)(nil)
	_ pipeline.Pusher    = (*testDrop)(nil)

	_ pipeline.BackendChecker = (*testReach)(nil)
)
