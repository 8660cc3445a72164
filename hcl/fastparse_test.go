package hcl

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// fastCases are texts fastParse must parse (accepted: true) or leave to
// hclsyntax, each exactly as hclsyntax.ParseConfig parses it.
var fastCases = []struct {
	src      string
	accepted bool
}{
	{"", true},
	{"\n\n", true},
	{"# only a comment", true},
	{"// only a comment\n", true},
	{"a = 1\n", true},
	{"a = 1", true},
	{"a = 1 # why\nb = 2 // and why\n", true},
	{"a = 1\r\nb = \"x\"\r\n", true},
	{"  a\t=\t-1.5e3\n", true},
	{"a = \"\"\n", true},
	{"a = \"with \\\"escapes\\\" \\\\ \\n \\r \\t and $ and % and {}\"\n", true},
	{"a = [1, 2, 3,]\nb = []\nc = [\n  \"x\", # one\n  \"y\",\n]\n", true},
	{"a = { x = 1, \"y\" : 2\n  z = [true, false, null]\n}\nb = {}\n", true},
	{"a = {\n  # a comment\n  x = { y = [ { z = -var.q } ] }\n}\n", true},
	{"a = var.x\nb = local.y.z\nc = !true\nd = - - 1\n", true},
	{"vip \"v\" {\n  address = \"192.0.2.1\"\n  ports   = [80, 443]\n  pool    = \"p\"\n}\n", true},
	{"pool \"p\" {\n  backend \"b\" { address = \"198.51.100.1\" }\n  backend b2 {}\n  backend \"\" \"two\" {\n  }\n}\n", true},
	{"block {\n}", true},
	{"a = 1 # é\n", true},
	{"\"x\"", false},
	// Left to hclsyntax.
	{"a = 1 # é", false},
	{"a = \"é\"\n", false},
	{"a = \"\\u00e9\"\n", false},
	{"a = \"${x}\"\n", false},
	{"a = \"$${x}\"\n", false},
	{"a = <<EOT\nx\nEOT\n", false},
	{"/* c */ a = 1\n", false},
	{"a = 1 + 2\n", false},
	{"a = x ? 1 : 2\n", false},
	{"a = f(1)\n", false},
	{"a = x[0]\n", false},
	{"a = x.0\n", false},
	{"a = x.*.y\n", false},
	{"a = (1)\n", false},
	{"a = [for x in y : x]\n", false},
	{"a = {for k, v in y : k => v}\n", false},
	{"a = { (k) = 1 }\n", false},
	{"a = 1\na = 2\n", false},
	{"a = 1 b = 2\n", false},
	{"a = 1,\n", false},
	{"a {\n  b = 1 }\n", false},
	{"a { b = 1\n}\n", false},
	{"a { b = 1, c = 2 }\n", false},
	{"a {\n", false},
	{"a {}}\n", false},
	{"a = \"x\n", false},
	{"a = \"\\q\"\n", false},
	{"a = 1.2.3\n", false},
	{"a =\n1\n", false},
	{"a = [1 2]\n", false},
	{"a = { x = 1 y = 2 }\n", false},
	{"a = { x }\n", false},
	{"a \"l\" = 1\n", false},
	{"a = 1 & 2\n", false},
	{"a = 1;\n", false},
	{"a = \"x\".y\n", false},
	{"a = true.x\n", false},
	{"{}\n", false},
}

// TestFastParseCases checks fastParse on fastCases, from the file's start
// and from the middle of a file.
func TestFastParseCases(t *testing.T) {
	for _, c := range fastCases {
		for _, start := range []hcl.Pos{hcl.InitialPos, {Line: 7, Column: 5, Byte: 120}} {
			accepted := checkFastParse(t, []byte(c.src), start)
			if accepted != c.accepted {
				t.Errorf("fastParse(%q) at %v accepted %v, want %v", c.src, start, accepted, c.accepted)
			}
		}
	}
}

// TestFastParseFiles checks fastParse against hclsyntax on every HCL text
// of the repository (files, and the hcl blocks of Markdown files) and on
// the generated configurations of the benchmarks, which it must accept.
func TestFastParseFiles(t *testing.T) {
	accepted := 0
	texts := repoHCL(t)
	// Issue #10's configuration, smaller, and a pipeline of the
	// benchmarks'.
	var gen bytes.Buffer
	genPipeline(&gen, testTypes, 20, false)
	for v := range 20 {
		genFragment(&gen, v, 50, 2)
	}
	texts["generated"] = gen.Bytes()
	if !checkFastParse(t, gen.Bytes(), hcl.InitialPos) {
		t.Error("fastParse left the generated configuration to hclsyntax")
	}
	for name, src := range texts {
		if checkFastParse(t, src, hcl.InitialPos) {
			accepted++
		} else {
			t.Logf("left to hclsyntax: %s", name)
		}
		segs, diags := scanLimits(src, name, hcl.InitialPos, 256)
		if diags.HasErrors() {
			continue
		}
		// Pieces as parsePieces parses them.
		for _, s := range segs {
			to := s.to.Byte
			if to < 0 {
				to = len(src)
			}
			if len(s.body) == 0 {
				checkFastParse(t, src[s.from.Byte:to], s.from)
			}
		}
	}
	t.Logf("fastParse accepted %d of %d texts", accepted, len(texts))
	if accepted < len(texts)/2 {
		t.Errorf("fastParse accepted only %d of %d texts", accepted, len(texts))
	}
}

// repoHCL returns the HCL texts of the repository by name: .hcl files,
// and the hcl code blocks of Markdown files.
func repoHCL(t *testing.T) map[string][]byte {
	texts := map[string][]byte{}
	block := regexp.MustCompile("(?s)```hcl\n(.*?)```")
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		switch {
		case strings.HasSuffix(path, ".hcl"):
			src, err := os.ReadFile(path)
			texts[path] = src
			return err
		case strings.HasSuffix(path, ".md"):
			src, err := os.ReadFile(path)
			for i, m := range block.FindAllSubmatch(src, -1) {
				texts[fmt.Sprintf("%s#%d", path, i)] = m[1]
			}
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(texts) < 20 {
		t.Fatalf("found only %d HCL texts", len(texts))
	}
	return texts
}

// FuzzFastParse checks that whenever fastParse accepts a text, hclsyntax
// parses it without a diagnostic into the very same body.
func FuzzFastParse(f *testing.F) {
	addTestFiles(f)
	for _, c := range fastCases {
		f.Add([]byte(c.src))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<16 || checkLimits(src, "fuzz.hcl", hcl.InitialPos).HasErrors() {
			return // parseConfig never parses it
		}
		checkFastParse(t, src, hcl.InitialPos)
	})
}

// checkFastParse reports whether fastParse accepts src, failing t when it
// does and hclsyntax.ParseConfig does not parse it into the same body
// without diagnostics.
func checkFastParse(t *testing.T, src []byte, start hcl.Pos) bool {
	t.Helper()
	const name = "fast.hcl"
	body, ok := fastParse(src, name, start)
	if !ok {
		return false
	}
	want, diags := hclsyntax.ParseConfig(src, name, start)
	if diags.HasErrors() {
		t.Errorf("fastParse accepted %q, which hclsyntax reports: %s", src, diags.Error())
		return true
	}
	if !reflect.DeepEqual(body, want.Body) {
		t.Errorf("fastParse(%q) differs from hclsyntax at %s", src, firstDiff(reflect.ValueOf(body), reflect.ValueOf(want.Body), "body"))
	}
	return true
}

// firstDiff describes where got and want first differ, for reflect.DeepEqual
// failures.
func firstDiff(got, want reflect.Value, path string) string {
	if got.IsValid() != want.IsValid() || got.IsValid() && got.Type() != want.Type() {
		return fmt.Sprintf("%s: %v vs %v", path, got, want)
	}
	if !got.IsValid() {
		return ""
	}
	switch got.Kind() {
	case reflect.Pointer, reflect.Interface:
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				return fmt.Sprintf("%s: nil %v vs %v", path, got.IsNil(), want.IsNil())
			}
			return ""
		}
		return firstDiff(got.Elem(), want.Elem(), path)
	case reflect.Struct:
		for i := range got.NumField() {
			if d := firstDiff(got.Field(i), want.Field(i), path+"."+got.Type().Field(i).Name); d != "" {
				return d
			}
		}
		return ""
	case reflect.Slice:
		if got.IsNil() != want.IsNil() || got.Len() != want.Len() {
			return fmt.Sprintf("%s: nil %v len %d vs nil %v len %d", path, got.IsNil(), got.Len(), want.IsNil(), want.Len())
		}
		for i := range got.Len() {
			if d := firstDiff(got.Index(i), want.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
		return ""
	case reflect.Map:
		if got.IsNil() != want.IsNil() || got.Len() != want.Len() {
			return fmt.Sprintf("%s: nil %v len %d vs nil %v len %d", path, got.IsNil(), got.Len(), want.IsNil(), want.Len())
		}
		for _, k := range got.MapKeys() {
			if d := firstDiff(got.MapIndex(k), want.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); d != "" {
				return d
			}
		}
		return ""
	}
	if g, w := fmt.Sprint(got), fmt.Sprint(want); g != w {
		return fmt.Sprintf("%s: %s vs %s", path, g, w)
	}
	return ""
}

// TestLiteralBackend checks that literalBackend decodes what it accepts
// as decodeBody does, without diagnostics, and accepts only literals that
// fit.
func TestLiteralBackend(t *testing.T) {
	for _, c := range []struct {
		body     string
		accepted bool
	}{
		{``, true},
		{`address = "192.0.2.1"`, true},
		{"address = \"2001:db8::1\"\nweight = 0\ndrain = true", true},
		{"weight = 4294967295\ndrain = false", true},
		{`weight = 2.0`, true},
		{`weight = 4294967296`, false},
		{`weight = -1`, false},
		// gohcl would take it as 1 (big.Float.Uint64 calls it exact):
		// decodeBody says it is not a whole number.
		{`weight = 1.5`, false},
		{`weight = "5"`, false},
		{`weight = null`, false},
		{`drain = "true"`, false},
		{`address = 1`, false},
		{`address = var.a`, false},
		{`address = "${var.a}"`, false},
		{`port = 80`, false},
		{"inner {\n}", false},
	} {
		src := []byte("backend \"b\" {\n" + c.body + "\n}\n")
		f, diags := hclsyntax.ParseConfig(src, "b.hcl", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		body := f.Body.(*hclsyntax.Body).Blocks[0].Body
		var got control.Backend
		var gotAddress string
		if ok := literalBackend(body, &got, &gotAddress); ok != c.accepted {
			t.Errorf("literalBackend(%q) = %v, want %v", c.body, ok, c.accepted)
		}
		if !c.accepted {
			if !reflect.DeepEqual(got, control.Backend{}) || gotAddress != "" {
				t.Errorf("literalBackend(%q) refused it but set %+v, %q", c.body, got, gotAddress)
			}
			continue
		}
		l := &loader{ctx: &hcl.EvalContext{}}
		var want control.Backend
		var wantAddress string
		l.decodeBody(body, map[string]any{"address": &wantAddress, "weight": &want.Weight, "drain": &want.Drain},
			"A backend block", backendSchema, map[pipeline.Range]bool{})
		if len(l.diags) > 0 {
			t.Errorf("literalBackend accepted %q, which decodeBody reports: %v", c.body, l.diags)
		}
		if !reflect.DeepEqual(got, want) || gotAddress != wantAddress {
			t.Errorf("literalBackend(%q) = %+v, %q; decodeBody: %+v, %q", c.body, got, gotAddress, want, wantAddress)
		}
	}
}

// BenchmarkParse parses one fragment of issue #10's configuration (a VIP
// and its pool of 100 backends) with fastParse and with hclsyntax.
func BenchmarkParse(b *testing.B) {
	var w bytes.Buffer
	genFragment(&w, 1, 100, 2)
	src := w.Bytes()
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := fastParse(src, "f.hcl", hcl.InitialPos); !ok {
				b.Fatal("not fast")
			}
		}
	})
	b.Run("hclsyntax", func(b *testing.B) {
		b.SetBytes(int64(len(src)))
		b.ReportAllocs()
		for b.Loop() {
			hclsyntax.ParseConfig(src, "f.hcl", hcl.InitialPos)
		}
	})
}

// TestPoolRuns checks that decoding the main file's pools in runs gives
// the configuration and the diagnostics of one run.
func TestPoolRuns(t *testing.T) {
	var w bytes.Buffer
	genPipeline(&w, testTypes, 0, false)
	w.WriteString("variable \"w\" {\n  type    = number\n  default = \"x\"\n}\n")
	for p := range 130 {
		fmt.Fprintf(&w, "\nvip \"v%d\" {\n  address = %q\n  pool    = \"p%d\"\n}\n\npool \"p%d\" {\n", p, addr(100, p), p, p)
		for b := range 5 {
			switch (p + b) % 7 {
			case 0:
				fmt.Fprintf(&w, "  backend \"b%d-%d\" { address = \"%s/32\" }\n", p, b, addr(10, p*5+b))
			case 1:
				fmt.Fprintf(&w, "  backend \"b%d-%d\" {\n    address = %q\n    weight  = var.w\n  }\n", p, b, addr(10, p*5+b))
			case 2:
				fmt.Fprintf(&w, "  backend \"b%d-%d\" {\n    address = %q\n    weight  = \"heavy\"\n  }\n", p, b, addr(10, p*5+b))
			case 3:
				fmt.Fprintf(&w, "  backend \"b%d-%d\" {\n    address = %q\n    port    = 80\n  }\n", p, b, addr(10, p*5+b))
			default:
				fmt.Fprintf(&w, "  backend \"b%d-%d\" { address = %q }\n", p, b, addr(10, p*5+b))
			}
		}
		if p%3 == 0 {
			w.WriteString("  health_check \"http\" {\n    interval = \"soon\"\n  }\n")
		}
		w.WriteString("}\n")
	}
	load := func(run int) (*File, string) {
		defer func(saved int) { poolRun = saved }(poolRun)
		poolRun = run
		f, diags := Load("runs.hcl", w.Bytes(), Options{})
		var out strings.Builder
		for _, d := range diags {
			fmt.Fprintf(&out, "%v: %s: %s\n", d.Subject, d.Summary, d.Detail)
		}
		return f, out.String()
	}
	one, wantDiags := load(1000)
	runs, gotDiags := load(7)
	if gotDiags != wantDiags {
		t.Errorf("diagnostics in runs of 7:\n%s\nin one run:\n%s", gotDiags, wantDiags)
	}
	if n := strings.Count(wantDiags, "\n"); n < 200 {
		t.Errorf("only %d diagnostics:\n%s", n, wantDiags)
	}
	if !reflect.DeepEqual(runs.Service, one.Service) {
		t.Errorf("configurations differ at %s", firstDiff(reflect.ValueOf(runs.Service), reflect.ValueOf(one.Service), "Service"))
	}
}

// TestContent checks content against hclsyntax's Content on every body
// of the repository's HCL texts, with the loader's schemas.
func TestContent(t *testing.T) {
	schemas := []*hcl.BodySchema{rootSchema, poolSchema, vipSchema, backendSchema, fragmentSchema,
		{Attributes: []hcl.AttributeSchema{{Name: "address", Required: true}, {Name: "weight"}}}}
	var gen bytes.Buffer
	genFragment(&gen, 1, 10, 2)
	texts := repoHCL(t)
	texts["generated"] = gen.Bytes()
	compared := 0
	var check func(b *hclsyntax.Body)
	check = func(b *hclsyntax.Body) {
		for _, s := range schemas {
			got, gotDiags := content(b, s)
			want, wantDiags := b.Content(s)
			// Content reports unsupported arguments in map order.
			sortDiags(gotDiags)
			sortDiags(wantDiags)
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotDiags, wantDiags) {
				t.Errorf("content of the body at %v with %v differs at %s, diagnostics %v, want %v", b.SrcRange, s,
					firstDiff(reflect.ValueOf(got), reflect.ValueOf(want), "content"), gotDiags, wantDiags)
			}
			compared++
		}
		for _, blk := range b.Blocks {
			check(blk.Body)
		}
	}
	for _, src := range texts {
		f, _ := hclsyntax.ParseConfig(src, "c.hcl", hcl.InitialPos)
		check(f.Body.(*hclsyntax.Body))
	}
	if compared < 1000 {
		t.Errorf("compared only %d bodies", compared)
	}
}
