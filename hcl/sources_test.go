package hcl

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// mainSrc is testdata/valid.hcl, whose VIPs web4 and dns6 use pools web
// and canary.
func mainSrc(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("testdata/valid.hcl")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// loadSources loads valid.hcl with frags and returns the diagnostics as
// WriteDiagnostics prints them.
func loadSources(t *testing.T, frags ...Fragment) (*File, hcl.Diagnostics, string) {
	t.Helper()
	f, diags := LoadSources("testdata/valid.hcl", mainSrc(t), frags, Options{})
	var b strings.Builder
	if err := WriteDiagnostics(&b, f.Files(), diags); err != nil {
		t.Fatal(err)
	}
	return f, diags, b.String()
}

// wantPrinted checks that out holds every one of want.
func wantPrinted(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("diagnostics lack %q; got:\n%s", w, out)
		}
	}
}

// TestSourcesCombine: a VIP in one fragment uses a pool in another (native
// and JSON syntax), a fragment's VIP uses the main file's pool, and
// fragments see the main file's variables and locals.
func TestSourcesCombine(t *testing.T) {
	f, diags, out := loadSources(t,
		Fragment{Name: "etcd:/xlb/vips/api", Src: []byte(`vip "api" {
  address = "192.0.2.20"
  ports   = var.ports
  pool    = "api"
}
vip "api-web" {
  address = "192.0.2.21"
  pool    = local.pool_name
}
`)},
		Fragment{Name: "conf.d/api.hcl.json", Src: []byte(`{
  "pool": {
    "api": {
      "backend": {
        "api-1": {"address": "198.51.100.11", "weight": "${local.web_weight}"},
        "api-2": {"address": "198.51.100.12"}
      },
      "health_check": {"tcp": {"interval": "2s"}}
    }
  }
}
`)})
	if len(diags) > 0 || f.Graph == nil {
		t.Fatalf("diagnostics:\n%s", out)
	}
	vips := map[string]string{}
	for _, v := range f.Service.VIPs {
		vips[v.Name] = v.Pool + " " + v.Range.String()
	}
	if vips["api"] != "api etcd:/xlb/vips/api:1:1" || vips["api-web"] != "web etcd:/xlb/vips/api:6:1" || len(vips) != 4 {
		t.Errorf("VIPs %v", vips)
	}
	for _, p := range f.Service.Pools {
		if p.Name != "api" {
			continue
		}
		if len(p.Backends) != 2 || len(p.HealthChecks) != 1 || p.Range.Filename != "conf.d/api.hcl.json" {
			t.Fatalf("pool api %+v", p)
		}
		for _, b := range p.Backends {
			if b.Name == "api-1" && (b.Weight != 2 || b.Address.String() != "198.51.100.11") {
				t.Errorf("backend %+v", b)
			}
		}
		if !f.Checkable(p.HealthChecks[0]) {
			t.Error("a sound health check in a JSON fragment is not Checkable")
		}
	}
	for _, v := range f.Service.VIPs {
		if v.Name == "api" && (len(v.Ports) != 2 || v.Ports[0] != 80) {
			t.Errorf("VIP api ports %v", v.Ports)
		}
	}
}

// TestSourcesDuplicates: a VIP, a pool and a backend declared in two
// sources are reported at the second place, naming the first, for the
// main file and a fragment and for two fragments.
func TestSourcesDuplicates(t *testing.T) {
	_, diags, out := loadSources(t,
		Fragment{Name: "a.hcl", Src: []byte(`
vip "web4" {
  address = "192.0.2.30"
  pool    = "extra"
}
pool "extra" {
  backend "x-1" { address = "198.51.100.21" }
}
`)},
		Fragment{Name: "etcd:/xlb/b", Src: []byte(`pool "extra" {
  backend "web-1" { address = "198.51.100.22" }
}
`)})
	if !diags.HasErrors() {
		t.Fatal("no error for duplicates")
	}
	wantPrinted(t, out,
		`a.hcl:2:1: error: Duplicate VIP name`,
		`A VIP named "web4" was already declared at testdata/valid.hcl:60:1`,
		`etcd:/xlb/b:1:1: error: Duplicate pool name`,
		`A pool named "extra" was already declared at a.hcl:6:1`,
		`etcd:/xlb/b:2:3: error: Duplicate backend name`,
		`A backend named "web-1" was already declared at testdata/valid.hcl:74:3 (pool "web")`,
		"    1 | pool \"extra\" {\n",
	)
}

// TestSourcesRefused: a fragment holds only vip and pool blocks; the rest
// is refused where it stands.
func TestSourcesRefused(t *testing.T) {
	_, diags, out := loadSources(t,
		Fragment{Name: "bad.hcl", Src: []byte(`pipeline {
  workers = 1
}
variable "x" {}
hash_seed = 7
thing {}
`)},
		Fragment{Name: "bad.json", Src: []byte(`{"locals": {"y": 1}}`)})
	if !diags.HasErrors() {
		t.Fatal("no error")
	}
	wantPrinted(t, out,
		"bad.hcl:1:1: error: Not allowed in a config source\n    1 | pipeline {\n      | ^^^^^^^^\n   A pipeline block belongs in the main configuration file, testdata/valid.hcl",
		`bad.hcl:4:1: error: Not allowed in a config source`,
		`bad.hcl:5:1: error: Not allowed in a config source`,
		`bad.hcl:6:1: error: Unsupported block type`,
		`A config source's fragment takes: vip blocks, pool blocks.`,
		`bad.json:1:12: error: Not allowed in a config source`,
	)
}

// TestSourcesErrorsAtTheirPlace: a malformed JSON fragment is reported at
// its line, with its snippet, as is an error in a native one; the main
// file alone is not.
func TestSourcesErrorsAtTheirPlace(t *testing.T) {
	_, diags, out := loadSources(t,
		Fragment{Name: "etcd:/xlb/broken", JSON: true, Src: []byte("{\n  \"vip\": {\n    \"x\": {\"address\": \"192.0.2.40\",}\n  }\n}\n")})
	if !diags.HasErrors() || strings.Contains(out, "testdata/valid.hcl:") {
		t.Fatalf("diagnostics:\n%s", out)
	}
	wantPrinted(t, out, "etcd:/xlb/broken:3:", "    3 |     \"x\": {\"address\": \"192.0.2.40\",}\n")

	_, _, out = loadSources(t,
		Fragment{Name: "etcd:/xlb/typo", Src: []byte("vip \"y\" {\n  address = \"192.0.2.300\"\n  pool    = \"web\"\n}\n")})
	wantPrinted(t, out, "etcd:/xlb/typo:2:13: error: Invalid address\n    2 |   address = \"192.0.2.300\"\n")
	_, _, out = loadSources(t,
		Fragment{Name: "v.hcl.json", Src: []byte("{\"vip\": {\"z\": {\n  \"address\": \"192.0.2.41\",\n  \"pool\": \"nowhere\"}}}")})
	wantPrinted(t, out, "v.hcl.json:3:3: error: Unknown pool\n    3 |   \"pool\": \"nowhere\"}}}\n")
}

// TestSourcesLimits: MaxNesting applies to each fragment, JSON's arrays
// and its strings' templates included, and MaxFileSize to each and to all
// sources together.
func TestSourcesLimits(t *testing.T) {
	deep := `{"vip": {"x": {"pool": "` + "${" + strings.Repeat("(", MaxNesting) + "1" + strings.Repeat(")", MaxNesting) + "}" + `"}}}`
	_, _, out := loadSources(t, Fragment{Name: "deep.json", Src: []byte(deep)})
	wantPrinted(t, out, "deep.json:1:24: error: Expression nested too deeply")
	arrays := `{"vip": {"x": {"ports": ` + strings.Repeat("[", MaxNesting) + strings.Repeat("]", MaxNesting) + `}}}`
	_, _, out = loadSources(t, Fragment{Name: "arrays.json", Src: []byte(arrays)})
	wantPrinted(t, out, "arrays.json:1:", "error: Expression nested too deeply")
	_, _, out = loadSources(t, Fragment{Name: "deep.hcl", Src: []byte("vip \"x\" { pool = " + strings.Repeat("(", MaxNesting+1) + "\"web\"" + strings.Repeat(")", MaxNesting+1) + " }\n")})
	wantPrinted(t, out, "deep.hcl:1:", "error: Expression nested too deeply")

	half := []byte("# " + strings.Repeat("x", MaxFileSize/2) + "\n")
	_, diags, out := loadSources(t, Fragment{Name: "a.hcl", Src: half}, Fragment{Name: "b.hcl", Src: half})
	if len(diags) != 1 {
		t.Fatalf("diagnostics:\n%s", out)
	}
	wantPrinted(t, out, "b.hcl:1:", "error: Configuration too large")

	// A main file over the limit leaves nothing for the fragments.
	big := append(half, half...)
	_, diags = LoadSources("big.hcl", big, []Fragment{{Name: "c.hcl", Src: []byte("pool \"p\" {}\n")}}, Options{})
	if len(diags) != 2 || diags[0].Summary != "File too large" || diags[1].Summary != "Configuration too large" || diags[1].Subject.Start.Byte != 0 {
		t.Errorf("diagnostics: %v", diags)
	}
}

// TestSourcesNamedOnce: two sources of one name are refused, as the
// diagnostics could not tell them apart.
func TestSourcesNamedOnce(t *testing.T) {
	frag := Fragment{Name: "a.hcl", Src: []byte(`pool "p" {}`)}
	_, _, out := loadSources(t, frag, frag, Fragment{Name: "testdata/valid.hcl"})
	wantPrinted(t, out, `Two sources are named "a.hcl"`, `Two sources are named "testdata/valid.hcl"`)
}

// TestSourcesMainAlone: LoadSources without fragments is Load.
func TestSourcesMainAlone(t *testing.T) {
	f, diags, _ := loadSources(t)
	g, gdiags := Load("testdata/valid.hcl", mainSrc(t), Options{})
	if len(diags) != len(gdiags) || f.Service.Digest() != g.Service.Digest() || len(f.Files()) != 1 {
		t.Errorf("LoadSources alone: %v, Load: %v", diags, gdiags)
	}
}

// TestSourcesUnknownVariable: a fragment's reference to a variable the
// main file does not declare is reported once, with a suggestion, in
// native syntax as in JSON.
func TestSourcesUnknownVariable(t *testing.T) {
	_, diags, out := loadSources(t,
		Fragment{Name: "n.hcl", Src: []byte("vip \"q\" {\n  address = \"192.0.2.50\"\n  ports   = var.port\n  pool    = \"web\"\n}\n")},
		Fragment{Name: "j.json", Src: []byte(`{"vip": {"r": {"address": "192.0.2.51", "pool": "web", "ports": "${var.port}"}}}`)})
	wantPrinted(t, out, "n.hcl:3:13: error: Unknown variable", `No variable named "port" is declared (did you mean "ports"?)`, "j.json:1:71: error: Unsupported attribute", "j.json:1:")
	if len(diags) != 2 {
		t.Errorf("%d diagnostics:\n%s", len(diags), out)
	}
}

// TestSourcesShards: a fragment's VIP names its shards, checked against
// the main file's shard_names at the fragment's item (native and JSON);
// a fragment may not set the node's shards.
func TestSourcesShards(t *testing.T) {
	main := string(mainSrc(t)) + "\nshard_names = [\"a\", \"b\"]\n"
	load := func(frags ...Fragment) (*File, string) {
		t.Helper()
		f, diags := LoadSources("testdata/valid.hcl", []byte(main), frags, Options{})
		var b strings.Builder
		if err := WriteDiagnostics(&b, f.Files(), diags); err != nil {
			t.Fatal(err)
		}
		return f, b.String()
	}
	f, out := load(Fragment{Name: "etcd:/xlb/vips/api", Src: []byte("vip \"api\" {\n  address = \"192.0.2.20\"\n  pool    = \"web\"\n  shards  = [\"b\"]\n}\n")})
	if out != "" || len(f.Service.VIPs) == 0 || !slices.Equal(f.Service.VIPs[len(f.Service.VIPs)-1].Shards, []string{"b"}) {
		t.Fatalf("a fragment's VIP of shard b: %v\n%s", f.Service.VIPs, out)
	}
	_, out = load(Fragment{Name: "etcd:/xlb/vips/api", Src: []byte("vip \"api\" {\n  address = \"192.0.2.20\"\n  pool    = \"web\"\n  shards  = [\"a\", \"c\"]\n}\n")})
	wantPrinted(t, out, "etcd:/xlb/vips/api:4:19: error: Unknown shard\n")
	_, out = load(Fragment{Name: "v.hcl.json", Src: []byte("{\"vip\": {\"z\": {\n  \"address\": \"192.0.2.41\",\n  \"pool\": \"web\",\n  \"shards\": [\"bb\"]}}}")})
	wantPrinted(t, out, "v.hcl.json:4:13: error: Unknown shard\n", `did you mean "b"?`)
	_, out = load(Fragment{Name: "etcd:/xlb/node", Src: []byte("shards = [\"a\"]\n")})
	wantPrinted(t, out, "etcd:/xlb/node:1:1: error: Not allowed in a config source\n")
}

// TestSourcesSyntaxErrorAlone: while a fragment does not parse, only
// syntax errors are reported, as when the main file does not: not the
// main file's other errors, though it is evaluated before the fragments
// are parsed and decoded, nor those of the fragments that parsed, and the
// File holds nothing decoded.
func TestSourcesSyntaxErrorAlone(t *testing.T) {
	src := append(mainSrc(t), "\nlocals {\n  broken = var.undeclared\n}\n"...)
	good := Fragment{Name: "good.hcl", Src: []byte("vip \"g\" {\n  address = \"192.0.2.60\"\n  pool    = \"nowhere\"\n}\n")}
	bad := Fragment{Name: "bad.hcl", Src: []byte("vip \"b\" {\n  address = \n}\n")}
	f, diags := LoadSources("testdata/valid.hcl", src, []Fragment{good, bad}, Options{})
	if len(diags) != 1 || diags[0].Subject.Filename != "bad.hcl" {
		t.Errorf("diagnostics: %v", diags)
	}
	if len(f.Service.VIPs) != 0 || len(f.Service.Pools) != 0 || len(f.Sources) != 0 || f.Graph != nil {
		t.Errorf("the File holds what was decoded: %d VIPs, %d pools, %d sources", len(f.Service.VIPs), len(f.Service.Pools), len(f.Sources))
	}
	// Without the broken fragment, the other errors are reported.
	_, diags = LoadSources("testdata/valid.hcl", src, []Fragment{good}, Options{})
	var summaries []string
	for _, d := range diags {
		summaries = append(summaries, d.Summary)
	}
	if got := strings.Join(summaries, "; "); got != "Unknown pool; Unknown variable" {
		t.Errorf("diagnostics without the broken fragment: %s", got)
	}
}
