package hcl

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// printed is diags as WriteDiagnostics prints them with f's sources.
func printed(t *testing.T, f *File, diags hcl.Diagnostics) string {
	t.Helper()
	var b strings.Builder
	if err := WriteDiagnostics(&b, f.Files(), diags); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// A Cache's loads are LoadSources' loads: the same diagnostics, printed
// alike, the same service and the same checkable blocks, whatever the
// loads before (fragments changed, added, removed, broken and mended,
// the main file's options changed), and an unchanged fragment is not
// decoded again: its pools are the very same slices.
func TestCacheMatchesLoadSources(t *testing.T) {
	api := Fragment{Name: "etcd:/xlb/vips/api", Src: []byte("vip \"api\" {\n  address = \"192.0.2.20\"\n  ports   = var.ports\n  pool    = \"api\"\n}\n")}
	apiPool := Fragment{Name: "conf.d/api.hcl.json", Src: []byte(`{"pool": {"api": {
  "backend": {"api-1": {"address": "198.51.100.11", "weight": "${local.web_weight}"}, "api-2": {"address": "198.51.100.12"}},
  "health_check": {"tcp": {"interval": "2s", "path": "${var.nope}"}}}}}`)}
	db := Fragment{Name: "db.hcl", Src: []byte("vip \"db\" {\n  address = \"192.0.2.30\"\n  pool    = \"db\"\n}\npool \"db\" {\n  backend \"db-1\" { address = \"198.51.100.31\" }\n  health_check \"tcp\" { interval = \"1s\" }\n}\n")}
	with := func(fr Fragment, src string) Fragment { fr.Src = []byte(src); return fr }
	dbBad := with(db, "vip \"db\" {\n  address = \"192.0.2.300\"\n  pool    = \"db\"\n}\npool \"db\" {\n  backend \"db-1\" { address = \"198.51.100.31\" }\n  backend \"web-1\" { address = local.nope }\n  health_check \"tcp\" { interval = var.ports }\n}\n")
	dbDup := with(db, "pool \"db\" {\n  backend \"api-1\" { address = \"198.51.100.32\" }\n}\nvip \"web4\" {\n  address = \"192.0.2.31\"\n  pool    = \"db\"\n}\n")
	broken := Fragment{Name: "broken.hcl", Src: []byte("vip \"x\" {\n  address = \n")}
	refused := Fragment{Name: "refused.hcl", Src: []byte("hash_seed = 3\npool \"r\" {}\n")}
	opts := Options{}
	other := Options{Vars: map[string]string{"ports": "[8080]"}}
	steps := []struct {
		opts  Options
		frags []Fragment
	}{
		{opts, []Fragment{api, apiPool, db}},
		{opts, []Fragment{api, apiPool, db}},
		{opts, []Fragment{api, apiPool, dbBad}},
		{opts, []Fragment{api, apiPool, db}},
		{opts, []Fragment{api, apiPool, dbDup}},
		{other, []Fragment{api, apiPool, dbDup}},
		{other, []Fragment{api, apiPool, db}},
		{other, []Fragment{api, broken, apiPool, db}},
		{other, []Fragment{api, apiPool, db, refused}},
		{opts, []Fragment{db, apiPool}},
		{opts, []Fragment{db, api, apiPool, api}},
		{opts, []Fragment{api, apiPool, db}},
	}
	var c Cache
	var last *File
	for i, step := range steps {
		got, gotDiags := c.LoadSources("testdata/valid.hcl", mainSrc(t), step.frags, step.opts)
		want, wantDiags := LoadSources("testdata/valid.hcl", mainSrc(t), step.frags, step.opts)
		if g, w := printed(t, got, gotDiags), printed(t, want, wantDiags); g != w {
			t.Fatalf("step %d: the cache's diagnostics:\n%s\nLoadSources':\n%s", i, g, w)
		}
		if (got.Graph == nil) != (want.Graph == nil) || got.Service.Digest() != want.Service.Digest() ||
			!reflect.DeepEqual(got.Service, want.Service) || !reflect.DeepEqual(got.uncheckable, want.uncheckable) {
			t.Fatalf("step %d: the cache's file differs from LoadSources'", i)
		}
		if i == 1 || i == 3 {
			for j, p := range got.Service.Pools {
				if p.Name == "api" && &p.Backends[0] != &last.Service.Pools[j].Backends[0] {
					t.Errorf("step %d: an unchanged fragment's pool was decoded again", i)
				}
			}
		}
		last = got
	}
}

// A panic in one of parallel's workers is raised again in the caller,
// where xlbd's reload recovers it, instead of ending the process.
func TestParallelPanicReachesCaller(t *testing.T) {
	defer func() {
		if r := recover(); r != "fragment 3" {
			t.Errorf("recovered %v, want the worker's panic", r)
		}
	}()
	parallel(8, func(i int) {
		if i == 3 {
			panic("fragment 3")
		}
	})
	t.Error("parallel returned")
}
