package hcl

import (
	"cmp"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/pipeline"
)

// where returns the 1-based line and column of the n-th (0-based)
// occurrence of s in src.
func where(t *testing.T, src []byte, s string, n int) (line, col int) {
	t.Helper()
	off := 0
	for i := 0; ; i++ {
		j := strings.Index(string(src[off:]), s)
		if j < 0 {
			t.Fatalf("%q occurs fewer than %d times", s, n+1)
		}
		if i == n {
			off += j
			break
		}
		off += j + len(s)
	}
	before := string(src[:off])
	return strings.Count(before, "\n") + 1, off - strings.LastIndex(before, "\n")
}

func loadValid(t *testing.T) (*File, []byte) {
	t.Helper()
	src, err := os.ReadFile("testdata/valid.hcl")
	if err != nil {
		t.Fatal(err)
	}
	f, diags := Load("testdata/valid.hcl", src, Options{})
	if len(diags) > 0 {
		t.Fatalf("diagnostics for a valid file: %s", diags.Error())
	}
	if f.Graph == nil {
		t.Fatal("Graph is nil for a valid file")
	}
	return f, src
}

func TestValidSpec(t *testing.T) {
	f, src := loadValid(t)
	if f.Workers != 2 || f.Filename != "testdata/valid.hcl" || f.Files()["testdata/valid.hcl"] == nil {
		t.Errorf("Workers %d, Filename %q, Files %v", f.Workers, f.Filename, f.Files())
	}
	var names []string
	for _, d := range f.Spec.Elements {
		names = append(names, d.Type+" "+d.Name)
		if d.Configure == nil || d.ConfigReported {
			t.Errorf("%s: Configure %v, ConfigReported %v", d.Name, d.Configure != nil, d.ConfigReported)
		}
	}
	want := []string{"TestSource rx", "TestParse parse", "TestTable ct", "TestSelect sel", "TestSink tx", "TestDrop drop"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("elements %v, want %v", names, want)
	}

	ct := f.Spec.Elements[2]
	line, col := where(t, src, `element "TestTable" "ct"`, 0)
	if ct.Range.Start.Line != line || ct.Range.Start.Column != col || ct.Range.Filename != "testdata/valid.hcl" {
		t.Errorf("ct.Range %v, want line %d col %d", ct.Range, line, col)
	}
	_, tcol := where(t, src, `"TestTable" "ct"`, 0)
	if ct.TypeRange.Start.Line != line || ct.TypeRange.Start.Column != tcol || ct.TypeRange.End.Column != tcol+len(`"TestTable"`) {
		t.Errorf("ct.TypeRange %v, want line %d cols %d-%d", ct.TypeRange, line, tcol, tcol+11)
	}
	if line, col := where(t, src, "capacity = local.capacity", 0); attrAt(ct.AttrRanges, "capacity").Start.Line != line || attrAt(ct.AttrRanges, "capacity").Start.Column != col {
		t.Errorf("AttrRanges[capacity] %v, want %d:%d", attrAt(ct.AttrRanges, "capacity"), line, col)
	}

	// Each endpoint's range is its own text inside the chain string.
	var conns []string
	for _, c := range f.Spec.Connections {
		conns = append(conns, c.From.String()+" -> "+c.To.String())
	}
	wantConns := []string{
		"rx -> parse", "parse -> ct", "ct.hit -> tx", "ct.miss -> sel", "sel -> ct.learn",
		"parse.bad -> drop", "sel.nobackend -> drop",
	}
	if !reflect.DeepEqual(conns, wantConns) {
		t.Fatalf("connections %v, want %v", conns, wantConns)
	}
	tight := []struct {
		conn     int
		from     bool
		text     string
		occurs   int
		wantText string
	}{
		{3, true, "ct.miss", 0, "ct.miss"},
		{3, false, "sel -> ct.learn", 0, "sel"},
		{4, true, "sel -> ct.learn", 0, "sel"},
		{4, false, "ct.learn", 0, "ct.learn"},
		{6, true, "sel.nobackend", 0, "sel.nobackend"},
		{6, false, "drop\",", 1, "drop"}, // "sel.nobackend->drop" has no spaces
	}
	for _, tc := range tight {
		c := f.Spec.Connections[tc.conn]
		ep := c.To
		if tc.from {
			ep = c.From
		}
		line, col := where(t, src, tc.text, tc.occurs)
		r := ep.Range
		if r.Start.Line != line || r.Start.Column != col || r.End.Column != col+len(tc.wantText) ||
			string(src[r.Start.Byte:r.End.Byte]) != tc.wantText {
			t.Errorf("connection %d %v: range %v (%q), want line %d cols %d-%d", tc.conn, ep, r,
				src[r.Start.Byte:r.End.Byte], line, col, col+len(tc.wantText))
		}
	}
}

// TestConfigure checks that Configure applies the file's configuration to a
// fresh instance each time it is called (once per worker), with defaults
// kept and relative file paths anchored at the file's directory.
func TestConfigure(t *testing.T) {
	f, _ := loadValid(t)
	configure := func(name string) pipeline.Element {
		t.Helper()
		for _, d := range f.Spec.Elements {
			if d.Name == name {
				typ, _ := pipeline.Lookup(d.Type)
				el := typ.New()
				if err := d.Configure(el); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return el
			}
		}
		t.Fatalf("no element %s", name)
		return nil
	}
	cases := []struct {
		name string
		want pipeline.Element
	}{
		{"rx", &testSource{File: filepath.Join("testdata", "input.pcap"), Count: 1}},
		{"parse", &testParse{Mode: "strict"}},
		{"ct", &testTable{Capacity: 65536, Timeout: "30s", Tags: []string{"a", "b"}}},
		{"sel", &testSelect{Weight: 0.5, Enabled: true, Ports: []int{0, 1, 2}}},
		{"tx", &testSink{File: "/tmp/out.pcap", KeyFile: filepath.Join("testdata", "keys", "tx.key"), Note: "tx-1"}},
		{"drop", &testDrop{}},
	}
	for _, tc := range cases {
		a, b := configure(tc.name), configure(tc.name)
		if !reflect.DeepEqual(a, tc.want) {
			t.Errorf("%s configured as %+v, want %+v", tc.name, a, tc.want)
		}
		if (a == b && reflect.TypeOf(a).Elem().Size() > 0) || !reflect.DeepEqual(a, b) {
			t.Errorf("%s: two Configure calls gave %p %+v and %p %+v", tc.name, a, a, b, b)
		}
	}
}

func TestValidService(t *testing.T) {
	f, src := loadValid(t)
	svc := f.Service
	rangeAt := func(s string, n int) (int, int) { return where(t, src, s, n) }
	check := func(what string, r pipeline.Range, text string, n int) {
		t.Helper()
		line, col := rangeAt(text, n)
		if r.Filename != "testdata/valid.hcl" || r.Start.Line != line || r.Start.Column != col {
			t.Errorf("%s range %v, want %d:%d", what, r, line, col)
		}
	}
	if svc.HashSeed != 42 {
		t.Errorf("HashSeed %d", svc.HashSeed)
	}
	if len(svc.VIPs) != 2 || len(svc.Pools) != 2 {
		t.Fatalf("%d VIPs, %d pools", len(svc.VIPs), len(svc.Pools))
	}
	web := svc.VIPs[0]
	if web.Name != "web4" || web.Address != netip.MustParseAddr("192.0.2.10") || web.Protocol != "tcp" ||
		!reflect.DeepEqual(web.Ports, []uint16{80, 443}) || web.Pool != "web" || web.TableSize != 65537 {
		t.Errorf("vip web4: %+v", web)
	}
	check("vip web4", web.Range, `vip "web4"`, 0)
	check("vip web4 address", attrAt(web.AttrRange, "address"), `address    = "192.0.2.10"`, 0)
	check("vip web4 table_size", attrAt(web.AttrRange, "table_size"), `table_size = 65537`, 0)
	dns := svc.VIPs[1]
	if dns.Address != netip.MustParseAddr("2001:db8::53") || dns.Protocol != "tcp" || dns.Ports != nil || dns.TableSize != 0 {
		t.Errorf("vip dns6 defaults: %+v", dns)
	}
	if _, ok := dns.AttrRange.Get("ports"); ok {
		t.Error("AttrRange has ports, which the file does not set")
	}

	webPool := svc.Pools[0]
	if webPool.Name != "web" || !reflect.DeepEqual(webPool.Pools, []string{"canary"}) || len(webPool.Backends) != 2 {
		t.Fatalf("pool web: %+v", webPool)
	}
	check("pool web", webPool.Range, `pool "web"`, 0)
	check("pool web pools", attrAt(webPool.AttrRange, "pools"), `pools = ["canary"]`, 0)
	b1, b2 := webPool.Backends[0], webPool.Backends[1]
	if b1.Name != "web-1" || b1.Address != netip.MustParseAddr("198.51.100.1") || b1.Weight != 1 || b1.Drain {
		t.Errorf("backend web-1: %+v", b1)
	}
	if b2.Name != "web-2" || b2.Weight != 2 {
		t.Errorf("backend web-2: %+v", b2)
	}
	check("backend web-1", b1.Range, `backend "web-1"`, 0)
	check("backend web-2 weight", attrAt(b2.AttrRange, "weight"), `weight  = local.web_weight`, 0)
	c1 := svc.Pools[1].Backends[0]
	if c1.Address != netip.MustParseAddr("2001:db8:1::1") || !c1.Drain || c1.Weight != 1 {
		t.Errorf("backend canary-1: %+v", c1)
	}
	if errs := svc.Validate(); len(errs) > 0 {
		t.Errorf("control rejects the decoded service: %v", errs)
	}
	var _ control.Config = svc
}

// TestVars checks values from outside the file: typed and untyped,
// expressions and strings, and the errors for unknown names and bad values.
func TestVars(t *testing.T) {
	const src = `
variable "seed" {}
variable "name" { default = "x" }
variable "ports" { type = list(number) }
variable "label" { type = string }
hash_seed = var.seed
pipeline {
  element "TestSource" "rx" { count = length(var.ports) }
  element "TestSink" "tx" { file = "${var.name}-${var.label}.pcap" }
  connect = ["rx -> tx"]
}
`
	f, diags := Load("vars.hcl", []byte(src), Options{Vars: map[string]string{
		"seed": "7", "name": "web-1", "ports": "[80, 443, 8080]", "label": "42",
	}})
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags.Error())
	}
	if f.Service.HashSeed != 7 {
		t.Errorf("HashSeed %d, want 7", f.Service.HashSeed)
	}
	rx, tx := &testSource{}, &testSink{}
	if err := f.Spec.Elements[0].Configure(rx); err != nil || rx.Count != 3 {
		t.Errorf("rx count %d (%v), want 3", rx.Count, err)
	}
	if err := f.Spec.Elements[1].Configure(tx); err != nil || tx.File != "web-1-42.pcap" {
		t.Errorf("tx file %q (%v), want web-1-42.pcap", tx.File, err)
	}

	// The environment yields to -var, and its unknown names are ignored.
	f, diags = Load("vars.hcl", []byte(src), Options{
		Vars:    map[string]string{"ports": "[1]", "label": "l"},
		EnvVars: map[string]string{"seed": "9", "ports": "[1, 2]", "unused": "x"},
	})
	if len(diags) > 0 || f.Service.HashSeed != 9 {
		t.Fatalf("with EnvVars: seed %d, %s", f.Service.HashSeed, diags.Error())
	}
	if err := f.Spec.Elements[0].Configure(rx); err != nil || rx.Count != 1 {
		t.Errorf("rx count %d (%v), want 1 from -var over the environment", rx.Count, err)
	}

	_, diags = Load("vars.hcl", []byte(src), Options{Vars: map[string]string{
		"seed": "7", "ports": "[80, oops", "label": "x", "nope": "1",
	}})
	want := map[string]bool{"Unknown variable": true, "Invalid value for variable": true}
	if len(diags) != 2 {
		t.Fatalf("want 2 diagnostics, got %s", diags.Error())
	}
	for _, d := range diags {
		if !want[d.Summary] || d.Severity != hcl.DiagError {
			t.Errorf("unexpected %s", d.Error())
		}
		delete(want, d.Summary)
	}
}

func TestParseVarValue(t *testing.T) {
	cases := []struct {
		raw, ty, want string
	}{
		{"42", "", "42"},
		{"true", "", "true"},
		{`["a", "b"]`, "", `["a","b"]`},
		{"web", "", `"web"`},
		{"192.0.2.1", "", `"192.0.2.1"`},
		{"a-b", "", `"a-b"`},
		{"42", "string", `"42"`},
		{"42", "number", `"42"`}, // converted by the caller
		{`{a = 1}`, "map", `{"a":1}`},
	}
	for _, tc := range cases {
		ty := typeOf(tc.ty)
		v, err := parseVarValue(tc.raw, ty)
		if err != nil {
			t.Errorf("%q: %v", tc.raw, err)
			continue
		}
		if got := jsonOf(t, v); got != tc.want {
			t.Errorf("%q as %s: %s, want %s", tc.raw, tc.ty, got, tc.want)
		}
	}
	if _, err := parseVarValue("[1,", typeOf("map")); err == nil {
		t.Error("a broken expression for a map type was accepted")
	}
}

func TestLoadFileErrors(t *testing.T) {
	f, diags := LoadFile(filepath.Join(t.TempDir(), "missing.hcl"), Options{})
	if f == nil || !diags.HasErrors() || diags[0].Summary != "Cannot read configuration file" {
		t.Errorf("LoadFile of a missing file: %v", diags)
	}
}

// TestNull checks that null keeps an optional attribute's default, as an
// unset argument does in Terraform, while a required one is refused at its
// line.
func TestNull(t *testing.T) {
	const src = `hash_seed = 1
variable "capacity" { default = null }
pipeline {
  element "TestSource" "rx" { count = null }
  element "TestTable" "ct" {
    capacity = var.capacity
    tags     = null
  }
  element "TestSink" "tx" { file = "out.pcap" }
  connect = ["rx -> ct", "ct.hit -> tx", "ct.miss -> ct.learn"]
}
`
	f, diags := Load("null.hcl", []byte(src), Options{})
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %s", diags.Error())
	}
	rx, ct := &testSource{Count: 1}, &testTable{Capacity: 1024, Timeout: "30s", Tags: []string{"default"}}
	if err := f.Spec.Elements[0].Configure(rx); err != nil || rx.Count != 1 {
		t.Errorf("rx count %d (%v), want the default 1", rx.Count, err)
	}
	if err := f.Spec.Elements[1].Configure(ct); err != nil || ct.Capacity != 1024 || len(ct.Tags) != 1 {
		t.Errorf("ct %+v (%v), want the defaults", ct, err)
	}

	_, diags = Load("null.hcl", []byte(strings.Replace(src, `file = "out.pcap"`, "file = null", 1)), Options{})
	if len(diags) != 1 || diags[0].Summary != "Unsuitable value type" || diags[0].Subject.Start.Line != 9 {
		t.Errorf("a required attribute set to null: %v", diags)
	}
}

func TestHealthCheckDecoding(t *testing.T) {
	src := `
hash_seed = 1
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
  health_check "http" {
    interval = "1s"
    timeout  = "300ms"
    rise     = 2
    fall     = 3
    port     = 8080
    path     = "/healthz"
    tls      = true
    expect_status = [200, "204-206"]
  }
}
`
	f, diags := Load("hc.hcl", []byte(src), Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	hcs := f.Service.Pools[0].HealthChecks
	if len(hcs) != 1 {
		t.Fatalf("%d health checks, want 1", len(hcs))
	}
	hc := hcs[0]
	if hc.Method != "http" || hc.Interval != time.Second || hc.Timeout != 300*time.Millisecond || hc.Rise != 2 || hc.Fall != 3 || hc.Port != 8080 {
		t.Errorf("decoded %+v", hc)
	}
	// Parameters keep their HCL types on the way to the plugin.
	js, _ := json.Marshal(hc.Params)
	if want := `{"expect_status":[200,"204-206"],"path":"/healthz","tls":true}`; string(js) != want {
		t.Errorf("params %s, want %s", js, want)
	}
	if r := attrAt(hc.AttrRange, "port"); r.Start.Line != 17 {
		t.Errorf("port attribute at line %d, want 17", r.Start.Line)
	}
}

func TestPluginBlocks(t *testing.T) {
	src := `
hash_seed = 1
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
plugin "redis" {
  path   = "plugins/redis-check"
  sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
}
plugin "dns" {
  path = "/usr/lib/xlb/dns-check"
}
plugin "tcp" {
  concurrency = 2000
}
`
	f, diags := Load("/etc/xlb/main.hcl", []byte(src), Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	want := []Plugin{
		{Name: "redis", Path: "/etc/xlb/plugins/redis-check", SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{Name: "dns", Path: "/usr/lib/xlb/dns-check"},
		{Name: "tcp", Config: []byte(`{"concurrency":2000}`)},
	}
	if len(f.Plugins) != len(want) {
		t.Fatalf("plugins %+v", f.Plugins)
	}
	for i, p := range f.Plugins {
		if p.Name != want[i].Name || p.Path != want[i].Path || p.SHA256 != want[i].SHA256 || string(p.Config) != cmp.Or(string(want[i].Config), "{}") {
			t.Errorf("plugin %d = %+v, want %+v", i, p, want[i])
		}
	}
}

// TestPortRanges: each port of a list written out has its own range, and
// those of a computed list the whole expression's.
func TestPortRanges(t *testing.T) {
	src := []byte(`hash_seed = 1
pipeline {
  element "TestSource" "rx" {}
  element "TestDrop" "drop" {}
  connect = ["rx -> drop"]
}
vip "a" {
  address = "192.0.2.1"
  ports   = [80, "443", 8000 + 80]
  pool    = "p"
}
vip "b" {
  address = "192.0.2.2"
  ports   = range(1, 3)
  pool    = "p"
}
pool "p" {
  backend "x" { address = "198.51.100.1" }
}
`)
	f, diags := Load("ports.hcl", src, Options{})
	if len(diags) > 0 {
		t.Fatal(diags.Error())
	}
	for i, want := range [][]string{{"80", `"443"`, "8000 + 80"}, {"range(1, 3)", "range(1, 3)"}} {
		v := f.Service.VIPs[i]
		var got []string
		for _, r := range v.PortRanges {
			got = append(got, string(src[r.Start.Byte:r.End.Byte]))
		}
		if !reflect.DeepEqual(got, want) || len(v.Ports) != len(want) {
			t.Errorf("vip %s: ports %v at %q, want %q", v.Name, v.Ports, got, want)
		}
	}
	if p := f.Service.VIPs[0].Ports; !reflect.DeepEqual(p, []uint16{80, 443, 8080}) {
		t.Errorf("ports %v", p)
	}
}
