package hcl

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var benchFilesDir = flag.String("benchfiles", "", "write the files BenchmarkLoad loads, with the built-in element types, into this directory (for timing xlbd validate)")

// elementTypes are the element types a generated file's pipeline uses:
// a source, a one-in one-out element and a sink.
type elementTypes struct{ source, pass, sink string }

var (
	testTypes    = elementTypes{"TestSource", "TestPass", "TestDrop"}
	builtinTypes = elementTypes{"RxPcap", "Counter", "Discard"}
)

// benchFiles are the large files of BenchmarkLoad: each makes one part of
// the loader work at scale.
var benchFiles = []struct {
	name       string
	wantErrors bool
	gen        func(w *bytes.Buffer, t elementTypes)
}{
	{"vips-10000x10", false, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		for i := range 10000 {
			fmt.Fprintf(w, "\nvip \"v%d\" {\n  address = %q\n  ports   = [80, 443]\n  pool    = \"p%d\"\n}\n", i, addr(10, i), i)
			fmt.Fprintf(w, "\npool \"p%d\" {\n", i)
			for j := range 10 {
				fmt.Fprintf(w, "  backend \"b%d-%d\" { address = %q }\n", i, j, addr(172, i*10+j))
			}
			w.WriteString("}\n")
		}
	}},
	{"ports-65535", false, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		genPorts(w, 65535)
	}},
	{"dup-ports-100000", true, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		genPorts(w, 100000)
	}},
	{"bad-addresses-30000", true, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		genPool(w, 30000, "  backend \"b%d\" { address = \"%s/32\" }\n")
	}},
	{"locals-20000", false, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		w.WriteString("\nlocals {\n")
		for i := range 20000 {
			fmt.Fprintf(w, "  l%d = %d\n", i, i)
		}
		w.WriteString("}\n" + oneVIP)
	}},
	{"failed-variable-30000", true, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 0, false)
		w.WriteString("\nvariable \"w\" {\n  type    = number\n  default = \"x\"\n}\n")
		genPool(w, 30000, "  backend \"b%d\" {\n    address = \"%s\"\n    weight  = var.w\n  }\n")
	}},
	{"elements-100000", false, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 100000, false)
		w.WriteString(oneVIP)
	}},
	{"one-chain-100000", false, func(w *bytes.Buffer, t elementTypes) {
		genPipeline(w, t, 100000, true)
		w.WriteString(oneVIP)
	}},
}

const oneVIP = "\nvip \"v\" {\n  address = \"192.0.2.10\"\n  pool    = \"p\"\n}\n\npool \"p\" {\n  backend \"b\" { address = \"198.51.100.1\" }\n}\n"

// genPipeline writes hash_seed and a pipeline of a source, n elements
// that pass packets on, and a sink, joined one chain per link or all in
// one chain.
func genPipeline(w *bytes.Buffer, t elementTypes, n int, oneChain bool) {
	fmt.Fprintf(w, "hash_seed = 1\n\npipeline {\n  element %q \"rx\" {\n    file = \"in.pcap\"\n  }\n", t.source)
	for i := range n {
		fmt.Fprintf(w, "  element %q \"e%d\" {}\n", t.pass, i)
	}
	fmt.Fprintf(w, "  element %q \"drop\" {}\n\n  connect = [\n", t.sink)
	if oneChain {
		w.WriteString("    \"rx")
		for i := range n {
			fmt.Fprintf(w, " -> e%d", i)
		}
		w.WriteString(" -> drop\",\n  ]\n}\n")
		return
	}
	prev := "rx"
	for i := range n {
		fmt.Fprintf(w, "    \"%s -> e%d\",\n", prev, i)
		prev = fmt.Sprintf("e%d", i)
	}
	fmt.Fprintf(w, "    \"%s -> drop\",\n  ]\n}\n", prev)
}

// genPool writes a VIP on pool p and the pool, with n backends written by
// format from their number and address.
func genPool(w *bytes.Buffer, n int, format string) {
	w.WriteString("\nvip \"v\" {\n  address = \"192.0.2.10\"\n  pool    = \"p\"\n}\n\npool \"p\" {\n")
	for i := range n {
		fmt.Fprintf(w, format, i, addr(172, i))
	}
	w.WriteString("}\n")
}

// genPorts writes a VIP that lists n ports on one line, 1 to 65535 and
// then again from 1, and its pool.
func genPorts(w *bytes.Buffer, n int) {
	w.WriteString("\nvip \"v\" {\n  address = \"192.0.2.10\"\n  ports   = [")
	for i := range n {
		if i > 0 {
			w.WriteString(", ")
		}
		fmt.Fprint(w, i%65535+1)
	}
	w.WriteString("]\n  pool    = \"p\"\n}\n\npool \"p\" {\n  backend \"b\" { address = \"198.51.100.1\" }\n}\n")
}

// addr returns the i-th IPv4 address after first.0.0.0.
func addr(first, i int) string {
	return fmt.Sprintf("%d.%d.%d.%d", first, i>>16&255, i>>8&255, i&255)
}

// BenchmarkLoad loads and prints the diagnostics of each generated file, as
// xlbd validate does; the numbers are in docs/benchmarks.md.
func BenchmarkLoad(b *testing.B) {
	for _, bf := range benchFiles {
		b.Run(bf.name, func(b *testing.B) {
			var w bytes.Buffer
			bf.gen(&w, testTypes)
			src := w.Bytes()
			if _, diags := Load("bench.hcl", src, Options{}); diags.HasErrors() != bf.wantErrors {
				b.Fatalf("errors: %v, want %v: %.2000s", diags.HasErrors(), bf.wantErrors, diags.Error())
			}
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				f, diags := Load("bench.hcl", src, Options{})
				if err := WriteDiagnostics(io.Discard, f.Files(), diags); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWriteBenchFiles writes BenchmarkLoad's files for xlbd:
//
//	go test ./hcl -run TestWriteBenchFiles -benchfiles DIR
func TestWriteBenchFiles(t *testing.T) {
	if *benchFilesDir == "" {
		t.Skip("no -benchfiles directory")
	}
	for _, bf := range benchFiles {
		var w bytes.Buffer
		bf.gen(&w, builtinTypes)
		if err := os.WriteFile(filepath.Join(*benchFilesDir, bf.name+".hcl"), w.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// genFragment writes VIP v of issue #10's configuration with its pool of
// n backends; weight is the weight of backend 42.
func genFragment(w *bytes.Buffer, v, n, weight int) {
	fmt.Fprintf(w, "vip \"v%d\" {\n  address = %q\n  ports   = [80, 443]\n  pool    = \"p%d\"\n}\n\npool \"p%d\" {\n", v, addr(100, v), v, v)
	for i := range n {
		wi := 1
		if i == 42 {
			wi = weight
		}
		fmt.Fprintf(w, "  backend \"b%d-%d\" {\n    address = %q\n    weight  = %d\n  }\n", v, i, addr(10, v*n+i), wi)
	}
	w.WriteString("}\n")
}

// BenchmarkCache is issue #10's configuration as a config source hands it
// over, without the controller: a main file and 1,000 fragments of one
// VIP and its pool of 100 backends each (about 5 MB in all).
//   - full: LoadSources of them all (fragments parsed and decoded on
//     every core);
//   - one-fragment: a Cache's loads while one fragment changes between
//     two texts that differ in one backend's weight.
func BenchmarkCache(b *testing.B) {
	var main bytes.Buffer
	genPipeline(&main, testTypes, 0, false)
	frag := func(v, weight int) []byte {
		var w bytes.Buffer
		genFragment(&w, v, 100, weight)
		return w.Bytes()
	}
	frags := make([]Fragment, 1000)
	for v := range frags {
		frags[v] = Fragment{Name: fmt.Sprintf("etcd:/xlb/vips/v%d", v), Src: frag(v, 1)}
	}
	load := func(b *testing.B, c *Cache) {
		load := LoadSources
		if c != nil {
			load = c.LoadSources
		}
		if _, diags := load("main.hcl", main.Bytes(), frags, Options{}); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			load(b, nil)
		}
	})
	b.Run("one-fragment", func(b *testing.B) {
		c := &Cache{}
		load(b, c)
		texts := [2][]byte{frag(500, 2), frags[500].Src}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			frags[500].Src = texts[i%2]
			load(b, c)
			i++
		}
	})
}
