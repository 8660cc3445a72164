package control

import (
	"net/netip"

	"github.com/xlbproject/xlb/pipeline"
)

// Test configurations are built in code, laid out as if from f.hcl: each
// block is placed at a given line, and its attributes on the lines below
// it, in the order the helpers list them. A range's byte offset grows with
// the line, so errors sort in source order.

func rng(line, col int) pipeline.Range {
	return pipeline.Range{Filename: "f.hcl",
		Start: pipeline.Pos{Line: line, Column: col, Byte: line*1000 + col},
		End:   pipeline.Pos{Line: line, Column: col + 10, Byte: line*1000 + col + 10}}
}

func addr(s string) netip.Addr {
	if s == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(s)
}

// vip is a vip block at line: address at line+1, protocol +2, ports +3,
// pool +4, table_size +5.
func vip(line int, name, address, proto string, ports []uint16, pool string, m uint32) VIP {
	return VIP{Name: name, Address: addr(address), Protocol: proto, Ports: ports, Pool: pool, TableSize: m,
		Range: rng(line, 1),
		AttrRange: pipeline.AttrRanges{{Name: "address", Range: rng(line+1, 3)}, {Name: "protocol", Range: rng(line+2, 3)},
			{Name: "ports", Range: rng(line+3, 3)}, {Name: "pool", Range: rng(line+4, 3)}, {Name: "table_size", Range: rng(line+5, 3)}}}
}

// pool is a pool block at line with pools at line+1; its backends carry
// their own lines.
func pool(line int, name string, pools []string, backends ...Backend) Pool {
	return Pool{Name: name, Pools: pools, Backends: backends, Range: rng(line, 1),
		AttrRange: pipeline.AttrRanges{{Name: "pools", Range: rng(line+1, 3)}}}
}

// be is a backend block at line: address at line+1, weight +2.
func be(line int, name, address string, weight uint32) Backend {
	return Backend{Name: name, Address: addr(address), Weight: weight, Range: rng(line, 3),
		AttrRange: pipeline.AttrRanges{{Name: "address", Range: rng(line+1, 5)}, {Name: "weight", Range: rng(line+2, 5)}}}
}
