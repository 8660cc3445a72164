package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/plugins/host"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// fake is a daemon of one VIP web (backends a up, b draining) whose
// encapsulator sent 3 packets to a, and a drop counter.
type fake struct {
	overrides map[string]Override
	gen       uint64
	// snat, when set, is VIP web's SNAT ranges.
	snat *snapshot.SNAT
}

func (f *fake) Status() Status {
	return Status{Version: []string{"xlbd test"}, Workers: 2, DaemonStatus: DaemonStatus{Node: "lb1", Generation: f.gen}}
}

func (f *fake) Snapshot() *snapshot.Snapshot {
	reals := []snapshot.Real{
		{ID: 0, Epoch: 1, Backend: "a", Addr: netip.MustParseAddr("198.51.100.1"), Weight: 1, State: snapshot.Up},
		{ID: 1, Epoch: 1, Backend: "b", Addr: netip.MustParseAddr("198.51.100.2"), Weight: 1, State: snapshot.Draining},
	}
	vips := []snapshot.VIP{{Name: "web", Addr: netip.MustParseAddr("192.0.2.10"), Proto: 6, Ports: []uint16{80},
		Reals: []uint32{0, 1}, Table: []uint32{0, 0, 0, 0, 0, 0, 0}, TableDigest: "d1", SNAT: f.snat}}
	return snapshot.New(f.gen, 1, vips, reals)
}

func (f *fake) Pools() map[string]string { return map[string]string{"web": "pool-web"} }

func (f *fake) Stats() []pipeline.ElementStats {
	vb := []pipeline.Label{{Name: "vip", Value: "web"}, {Name: "backend", Value: "a"}}
	return []pipeline.ElementStats{{Name: "encap", Type: "GREEncap", Metrics: []pipeline.Metric{
		{Name: "xlb_encap_backend_packets_total", Labels: vb, Value: 3},
		{Name: "xlb_encap_backend_bytes_total", Labels: vb, Value: 300},
		{Name: pipeline.DropMetric, Labels: []pipeline.Label{{Name: "element", Value: "encap"}, {Name: "reason", Value: "no_route"}}, Value: 4},
	}}}
}

func (f *fake) Graph() *pipeline.Graph         { return nil }
func (f *fake) Health() map[string]bool        { return map[string]bool{"a": true} }
func (f *fake) Overrides() map[string]Override { return f.overrides }
func (f *fake) Plugins() []host.Status         { return []host.Status{{Name: "tcp", Restarts: 1}} }
func (f *fake) Routes() []host.AnnouncerStatus {
	return []host.AnnouncerStatus{{Name: "bgp", Routes: 1, InSync: true,
		Sessions: []sdk.Session{{Peer: "10.0.0.1", State: "established", Up: true, Prefixes: 1}}}}
}
func (f *fake) Reload(context.Context) (Result, error) {
	f.gen++
	return Result{Applied: true, Generation: f.gen}, nil
}

func (f *fake) Override(_ context.Context, backend string, set func(*Override)) (Result, error) {
	if backend != "a" && backend != "b" {
		return Result{}, &InputError{Msg: fmt.Sprintf("unknown backend %q", backend)}
	}
	o := f.overrides[backend]
	set(&o)
	f.overrides[backend] = o
	f.gen++
	return Result{Applied: true, Generation: f.gen}, nil
}

func call(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	if !json.Valid(w.Body.Bytes()) {
		t.Errorf("%s %s: not JSON: %s", method, path, w.Body)
	}
	return w.Code, w.Body.String()
}

func TestHandlerReads(t *testing.T) {
	h := Handler(&fake{overrides: map[string]Override{}, gen: 5})
	for _, c := range []struct{ path, want string }{
		{"/v1/status", `"generation": 5`},
		{"/v1/status", `"workers": 2`},
		{"/v1/vips", `"pool": "pool-web"`},
		{"/v1/vips", `"backends": 1`},
		{"/v1/backends", `"packets": 3`},
		{"/v1/backends?vip=web", `"state": "draining"`},
		{"/v1/backends", `"health": "unchecked"`},
		{"/v1/counters", `"reason": "no_route"`},
		{"/v1/plugins", `"restarts": 1`},
		{"/v1/routes", `"in_sync": true`},
		{"/v1/routes", `"peer": "10.0.0.1"`},
	} {
		code, body := call(t, h, "GET", c.path, "")
		if code != 200 || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s, want %s", c.path, code, body, c.want)
		}
	}
	var bs []Backend
	_, body := call(t, h, "GET", "/v1/backends", "")
	if err := json.Unmarshal([]byte(body), &bs); err != nil || len(bs) != 2 || bs[0].Health != "up" || bs[0].Bytes != 300 || bs[1].Packets != 0 {
		t.Errorf("backends: %+v %v", bs, err)
	}
	var cs Counters
	_, body = call(t, h, "GET", "/v1/counters", "")
	if err := json.Unmarshal([]byte(body), &cs); err != nil || len(cs.Drops) != 1 || len(cs.Elements[0].Metrics) != 2 {
		t.Errorf("counters: %+v %v", cs, err)
	}
}

// TestBackendsSNAT: /v1/backends gives each backend its SNAT range, and
// none without SNAT.
func TestBackendsSNAT(t *testing.T) {
	f := &fake{overrides: map[string]Override{}, gen: 5}
	_, body := call(t, Handler(f), "GET", "/v1/backends", "")
	if strings.Contains(body, "snat") {
		t.Errorf("without SNAT: %s", body)
	}
	f.snat = &snapshot.SNAT{First: 1024, Size: 1000, Owners: []uint32{snapshot.NoReal, 1, 0}}
	var bs []Backend
	_, body = call(t, Handler(f), "GET", "/v1/backends", "")
	if err := json.Unmarshal([]byte(body), &bs); err != nil || len(bs) != 2 || bs[0].SNAT != "3024-4023" || bs[1].SNAT != "2024-3023" {
		t.Errorf("backends: %+v %v", bs, err)
	}
}

func TestHandlerWrites(t *testing.T) {
	f := &fake{overrides: map[string]Override{}, gen: 5}
	h := Handler(f)
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/reload", "", 200, `"generation": 6`},
		{"POST", "/v1/backends/a/drain", "", 200, `"applied": true`},
		{"POST", "/v1/backends/b/weight", `{"weight": 3}`, 200, `"generation": 8`},
		{"POST", "/v1/backends/x/drain", "", 400, `unknown backend \"x\"`},
		{"POST", "/v1/backends/b/weight", `{"weight": 4294967296}`, 400, "bad weight 4294967296"},
		{"POST", "/v1/backends/b/weight", `{"weight": "3"}`, 400, `bad weight \"3\"`},
		{"POST", "/v1/backends/b/weight", `{"weight": [}`, 400, "malformed JSON"},
		{"POST", "/v1/backends/b/weight", `{}`, 400, `missing \"weight\"`},
		{"POST", "/v1/backends/b/weight", `{"weight": 3, "x": 1}`, 400, "malformed JSON"},
		{"GET", "/v1/backends?vip=nope", "", 404, `no VIP \"nope\"`},
		{"GET", "/v2/status", "", 404, "not found"},
		{"DELETE", "/v1/status", "", 405, "method not allowed"},
		{"GET", "/v1/backends/a/drain", "", 405, "method not allowed"},
	} {
		code, body := call(t, h, c.method, c.path, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s %s %s: %d %s, want %d %s", c.method, c.path, c.body, code, body, c.code, c.want)
		}
	}
	if o := f.overrides["a"]; o.Drain == nil || !*o.Drain || o.Weight != nil {
		t.Errorf("a: %+v", o)
	}
	if o := f.overrides["b"]; o.Weight == nil || *o.Weight != 3 || f.gen != 8 {
		t.Errorf("b: %+v, generation %d: a refused request changed something", o, f.gen)
	}
	if _, body := call(t, h, "GET", "/v1/backends", ""); !strings.Contains(body, `"override": {`) {
		t.Errorf("backends without their overrides: %s", body)
	}
}
