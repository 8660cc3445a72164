package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginpb "github.com/xlbproject/xlb/plugins/proto"
)

// fakeChecker passes even ports and fails odd ones, naming the target in
// the message so that tests can check the order of results.
type fakeChecker struct {
	mu       sync.Mutex
	deadline time.Duration // time left on ctx when Check was called
	cfg      struct {
		Method string `json:"method"`
		Codes  []int  `json:"codes"`
	}
	short bool // return one result fewer than asked
}

func (f *fakeChecker) Check(ctx context.Context, targets []Target) []Result {
	if dl, ok := ctx.Deadline(); ok {
		f.mu.Lock()
		f.deadline = time.Until(dl)
		f.mu.Unlock()
	}
	res := make([]Result, len(targets))
	for i, t := range targets {
		res[i] = Result{Status: StatusFail, Message: t.Name, Latency: time.Duration(t.ID) * time.Microsecond}
		if t.Port%2 == 0 {
			res[i].Status = StatusPass
		}
	}
	if f.short && len(res) > 0 {
		res = res[:len(res)-1]
	}
	return res
}

func (f *fakeChecker) Describe() Info {
	return Info{Version: "1.2.3", Schema: []Attribute{
		{Name: "method", Type: "string", Required: true, Description: "HTTP method"},
		{Name: "codes", Type: "list(number)"},
	}, Params: []Attribute{{Name: "path", Type: "string"}}}
}

func (f *fakeChecker) Configure(config []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := DecodeConfig(config, &f.cfg); err != nil {
		return err
	}
	var errs []error
	if f.cfg.Method != "GET" && f.cfg.Method != "HEAD" {
		errs = append(errs, &ConfigError{Attribute: "method", Message: "must be GET or HEAD"})
	}
	for _, c := range f.cfg.Codes {
		if c < 100 || c > 599 {
			errs = append(errs, &ConfigError{Attribute: "codes", Message: fmt.Sprintf("%d is not an HTTP status", c)})
		}
	}
	return errors.Join(errs...)
}

func targets(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = Target{ID: uint64(1000 + i), Name: fmt.Sprintf("b%d", i), Address: "192.0.2.1", Port: uint16(8000 + i)}
	}
	return ts
}

// checkBatch asserts one result per target, in order, with the fake's
// verdicts.
func checkBatch(t *testing.T, ts []Target, rs []Result) {
	t.Helper()
	if len(rs) != len(ts) {
		t.Fatalf("%d results for %d targets", len(rs), len(ts))
	}
	for i, r := range rs {
		want := StatusFail
		if ts[i].Port%2 == 0 {
			want = StatusPass
		}
		if r.ID != ts[i].ID || r.Message != ts[i].Name || r.Status != want || r.Latency != time.Duration(ts[i].ID)*time.Microsecond {
			t.Fatalf("result %d = %+v, want ID %d, message %q, status %v", i, r, ts[i].ID, ts[i].Name, want)
		}
	}
}

// dispense connects a client to p over gRPC in process and returns what
// the client dispenses for kind.
func dispense(t testing.TB, kind Kind, p plugin.Plugin) any {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{string(kind): p})
	// Close asks the server to stop (go-plugin's controller); stopping it
	// here as well would race inside go-plugin.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(string(kind))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func grpcHealthChecker(t testing.TB, impl HealthChecker) *HealthCheckerClient {
	return dispense(t, KindHealthChecker, &HealthCheckerPlugin{Impl: impl}).(*HealthCheckerClient)
}

func TestHealthCheckerBatchInOrder(t *testing.T) {
	impl := &fakeChecker{}
	c := grpcHealthChecker(t, impl)
	ts := targets(1000)
	rs, err := c.CheckBatch(context.Background(), nil, ts, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkBatch(t, ts, rs)
	// The per-probe timeout reaches the plugin as its ctx deadline.
	impl.mu.Lock()
	left := impl.deadline
	impl.mu.Unlock()
	if left <= time.Second || left > 2*time.Second {
		t.Errorf("plugin saw %v left on its deadline, want about 2s", left)
	}
}

func TestHealthCheckerEmptyBatch(t *testing.T) {
	c := grpcHealthChecker(t, &fakeChecker{})
	rs, err := c.CheckBatch(context.Background(), nil, nil, 0)
	if err != nil || len(rs) != 0 {
		t.Fatalf("empty batch: %v, %v", rs, err)
	}
}

func TestHealthCheckerMissingResultIsUnknown(t *testing.T) {
	c := grpcHealthChecker(t, &fakeChecker{short: true})
	ts := targets(3)
	rs, err := c.CheckBatch(context.Background(), nil, ts, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkBatch(t, ts[:2], rs[:2])
	if last := rs[2]; last.ID != ts[2].ID || last.Status != StatusUnknown {
		t.Errorf("missing result came back as %+v, want ID %d and status unknown", last, ts[2].ID)
	}
}

func TestHealthCheckerCallFailureIsUnknown(t *testing.T) {
	c := grpcHealthChecker(t, &fakeChecker{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ts := targets(2)
	if rs, err := c.CheckBatch(ctx, nil, ts, time.Second); err == nil || rs != nil {
		t.Fatalf("CheckBatch with a cancelled context = %+v, %v; want no results and an error", rs, err)
	}
}

// paramsChecker is fakeChecker with parameters: {"fail": N} fails port N.
type paramsChecker struct {
	fakeChecker
	parses int
}

type failParam struct {
	Fail uint16 `json:"fail"`
}

func (p *paramsChecker) ParseParams(js []byte) (any, error) {
	p.mu.Lock()
	p.parses++
	p.mu.Unlock()
	var fp failParam
	if err := DecodeConfig(js, &fp); err != nil {
		return nil, err
	}
	if fp.Fail == 0 {
		return nil, &ConfigError{Attribute: "fail", Message: "must be a port"}
	}
	return &fp, nil
}

func (p *paramsChecker) Check(ctx context.Context, targets []Target) []Result {
	res := p.fakeChecker.Check(ctx, targets)
	for i, t := range targets {
		if t.Params.(*failParam).Fail == t.Port {
			res[i].Status = StatusFail
		}
	}
	return res
}

// TestParams: a batch's parameters reach Check as what ParseParams made of
// them, parsed once per distinct block; ValidateParams reports refusals by
// attribute; a checker without ParamsParser refuses any parameter.
func TestParams(t *testing.T) {
	impl := &paramsChecker{}
	c := grpcHealthChecker(t, impl)
	ctx := context.Background()
	ts := targets(4) // ports 8000..8003 (even pass)
	for range 3 {
		for _, params := range []string{`{"fail":8002}`, `{"fail":8003}`} {
			rs, err := c.CheckBatch(ctx, []byte(params), ts, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(rs[0].Status, rs[2].Status); got != map[string]string{`{"fail":8002}`: "pass fail", `{"fail":8003}`: "pass pass"}[params] {
				t.Errorf("%s: ports 8000 and 8002: %s", params, got)
			}
		}
	}
	if impl.parses != 2 {
		t.Errorf("ParseParams called %d times for 2 distinct blocks, want 2", impl.parses)
	}
	var ce *ConfigError
	if err := c.ValidateParams(ctx, []byte(`{"fail":0}`)); !errors.As(err, &ce) || ce.Attribute != "fail" {
		t.Errorf("ValidateParams(fail 0) = %v", err)
	}
	if rs, err := c.CheckBatch(ctx, []byte(`{"fail":0}`), ts, time.Second); err == nil {
		t.Errorf("CheckBatch with refused parameters = %+v, want an error (no verdict)", rs)
	}
	plain := grpcHealthChecker(t, &fakeChecker{})
	if err := plain.ValidateParams(ctx, []byte(`{"fail":8002}`)); err == nil || !strings.Contains(err.Error(), "takes no parameters") {
		t.Errorf("a checker without parameters accepted some: %v", err)
	}
	if err := plain.ValidateParams(ctx, []byte(`{}`)); err != nil {
		t.Errorf("a checker without parameters refused none: %v", err)
	}
}

func TestInfoRoundTrip(t *testing.T) {
	c := grpcHealthChecker(t, &fakeChecker{})
	got, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Info{
		Kind:             KindHealthChecker,
		ProtocolVersions: []uint32{ProtocolVersion},
		Version:          "1.2.3",
		Schema: []Attribute{
			{Name: "method", Type: "string", Required: true, Description: "HTTP method"},
			{Name: "codes", Type: "list(number)"},
		},
		Params: []Attribute{{Name: "path", Type: "string"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Info = %+v\nwant %+v", got, want)
	}
}

func TestConfigure(t *testing.T) {
	impl := &fakeChecker{}
	c := grpcHealthChecker(t, impl)
	ctx := context.Background()
	if err := c.Configure(ctx, []byte(`{"method":"HEAD","codes":[200,204]}`)); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
	impl.mu.Lock()
	if impl.cfg.Method != "HEAD" || !reflect.DeepEqual(impl.cfg.Codes, []int{200, 204}) {
		t.Errorf("plugin decoded %+v", impl.cfg)
	}
	impl.mu.Unlock()

	tests := []struct {
		config string
		want   []ConfigError
	}{
		{`{"method":"PUT","codes":[200,42]}`, []ConfigError{
			{Attribute: "method", Message: "must be GET or HEAD"},
			{Attribute: "codes", Message: "42 is not an HTTP status"},
		}},
		{`{"method":"GET","colour":"red"}`, []ConfigError{
			{Message: `decoding the configuration: json: unknown field "colour"`},
		}},
	}
	for _, tt := range tests {
		err := c.Configure(ctx, []byte(tt.config))
		j, ok := err.(interface{ Unwrap() []error })
		if !ok {
			t.Errorf("Configure(%s) = %v, want joined ConfigErrors", tt.config, err)
			continue
		}
		var got []ConfigError
		for _, e := range j.Unwrap() {
			var ce *ConfigError
			if !errors.As(e, &ce) {
				t.Fatalf("Configure(%s): %T is not a *ConfigError", tt.config, e)
			}
			got = append(got, *ce)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Configure(%s) = %+v, want %+v", tt.config, got, tt.want)
		}
	}
}

// plainSource takes no configuration and has no Describe.
type plainSource struct{ updates []ConfigUpdate }

func (s plainSource) Watch(ctx context.Context, send func(ConfigUpdate) error) error {
	for _, u := range s.updates {
		if err := send(u); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func TestConfigSourceWatch(t *testing.T) {
	updates := []ConfigUpdate{
		{Revision: "1", Documents: []Document{{Name: "a.hcl", Format: "hcl", Content: []byte(`vip "web" {}`)}}},
		{Revision: "2", Documents: []Document{
			{Name: "a.hcl", Format: "hcl", Content: []byte(`vip "web" {}`)},
			{Name: "b.json", Format: "json", Content: []byte(`{}`)},
		}},
		{Revision: "2", Unavailable: "etcd: context deadline exceeded"},
	}
	c := dispense(t, KindConfigSource, &ConfigSourcePlugin{Impl: plainSource{updates}}).(*ConfigSourceClient)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	in, err := c.Info(ctx)
	if err != nil || in.Kind != KindConfigSource || in.Version != "" || in.Schema != nil {
		t.Errorf("Info = %+v, %v; want the config-source kind, no version, no schema", in, err)
	}
	if err := c.Configure(ctx, []byte(`{}`)); err != nil {
		t.Errorf("an empty configuration refused by a plugin without one: %v", err)
	}
	if err := c.Configure(ctx, []byte(`{"path":"/etc"}`)); err == nil {
		t.Error("a plugin without configuration accepted some")
	}

	var got []ConfigUpdate
	errStop := errors.New("stop")
	err = c.Watch(ctx, func(u ConfigUpdate) error {
		got = append(got, u)
		if len(got) == len(updates) {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Watch ended with %v, want the send function's error", err)
	}
	if !reflect.DeepEqual(got, updates) {
		t.Errorf("Watch received %+v\nwant %+v", got, updates)
	}
}

// fleetSource is a source that publishes node states: Publish keeps the
// last state, WatchPeers sends it back.
type fleetSource struct {
	plainSource
	published chan NodeStatus
}

func (s *fleetSource) Publish(_ context.Context, n NodeStatus) error {
	s.published <- n
	return nil
}

func (s *fleetSource) WatchPeers(ctx context.Context, send func(PeersUpdate) error) error {
	if err := send(PeersUpdate{Unavailable: "not yet"}); err != nil {
		return err
	}
	select {
	case n := <-s.published:
		if err := send(PeersUpdate{Nodes: []NodeStatus{n}}); err != nil {
			return err
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	return nil
}

func TestConfigSourcePublisher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	plain := dispense(t, KindConfigSource, &ConfigSourcePlugin{Impl: plainSource{}}).(*ConfigSourceClient)
	if err := plain.Publish(ctx, NodeStatus{Node: "a"}); !errors.Is(err, ErrNotPublisher) {
		t.Errorf("Publish to a source without Publisher: %v, want ErrNotPublisher", err)
	}
	if err := plain.WatchPeers(ctx, func(PeersUpdate) error { return nil }); !errors.Is(err, ErrNotPublisher) {
		t.Errorf("WatchPeers of a source without Publisher: %v, want ErrNotPublisher", err)
	}

	c := dispense(t, KindConfigSource, &ConfigSourcePlugin{Impl: &fleetSource{published: make(chan NodeStatus, 1)}}).(*ConfigSourceClient)
	want := NodeStatus{Node: "lb1", Revision: "42", SourcesDigest: "s", Generation: 7, ConfigDigest: "c",
		VIPs:             []VIPDigest{{Name: "web", Table: "t", Backends: "b"}},
		RejectedRevision: "43", Rejected: "etcd:/xlb/web:3,5: bad", Updated: time.Unix(1700000000, 5).UTC(), Shards: []string{"a", "b"}}
	var got []PeersUpdate
	errStop := errors.New("stop")
	err := c.WatchPeers(ctx, func(u PeersUpdate) error {
		got = append(got, u)
		if len(got) == 1 {
			if err := c.Publish(ctx, want); err != nil {
				t.Errorf("Publish: %v", err)
			}
			return nil
		}
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("WatchPeers ended with %v, want the send function's error", err)
	}
	wantUpdates := []PeersUpdate{{Unavailable: "not yet"}, {Nodes: []NodeStatus{want}}}
	if !reflect.DeepEqual(got, wantUpdates) {
		t.Errorf("WatchPeers received %+v\nwant %+v", got, wantUpdates)
	}
}

type fakeAnnouncer struct {
	mu     sync.Mutex
	routes []Route
}

func (a *fakeAnnouncer) SetRoutes(_ context.Context, routes []Route) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.routes = routes
	return nil
}

func (a *fakeAnnouncer) WithdrawAll(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.routes = nil
	return nil
}

func TestRouteAnnouncer(t *testing.T) {
	impl := &fakeAnnouncer{}
	c := dispense(t, KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: impl}).(*RouteAnnouncerClient)
	ctx := context.Background()
	routes := []Route{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Communities: []string{"65000:100"}, Attributes: map[string]string{"med": "10"}},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128"), NextHop: netip.MustParseAddr("2001:db8::1")},
	}
	if err := c.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	impl.mu.Lock()
	got := impl.routes
	impl.mu.Unlock()
	if len(got) != 2 || got[0].Prefix != routes[0].Prefix || got[0].NextHop.IsValid() ||
		!reflect.DeepEqual(got[0].Communities, routes[0].Communities) || got[0].Attributes["med"] != "10" ||
		got[1].Prefix != routes[1].Prefix || got[1].NextHop != routes[1].NextHop {
		t.Errorf("plugin got %+v, want %+v", got, routes)
	}
	if err := c.SetRoutes(ctx, []Route{{}}); err == nil {
		t.Error("a route without a prefix was sent")
	}
	if err := c.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	impl.mu.Lock()
	if impl.routes != nil {
		t.Errorf("after WithdrawAll the plugin still has %v", impl.routes)
	}
	impl.mu.Unlock()
}

// sessionAnnouncer is fakeAnnouncer with sessions.
type sessionAnnouncer struct {
	fakeAnnouncer
	sessions []Session
}

func (a *sessionAnnouncer) Sessions(context.Context) ([]Session, error) { return a.sessions, nil }

// oldAnnouncerPlugin serves the route-announcer service as a plugin built
// before Sessions existed does: every call unimplemented.
type oldAnnouncerPlugin struct{ RouteAnnouncerPlugin }

func (p *oldAnnouncerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterRouteAnnouncerServer(s, pluginpb.UnimplementedRouteAnnouncerServer{})
	return nil
}

// TestRouteAnnouncerSessions: an announcer's sessions reach the host; one
// without sessions, or built before the call existed, reports none.
func TestRouteAnnouncerSessions(t *testing.T) {
	want := []Session{{Peer: "10.0.0.1", State: "established", Up: true, Prefixes: 3}, {Peer: "2001:db8::1", State: "active"}}
	ctx := context.Background()
	c := dispense(t, KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: &sessionAnnouncer{sessions: want}}).(*RouteAnnouncerClient)
	if got, err := c.Sessions(ctx); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Sessions: %+v, %v; want %+v", got, err, want)
	}
	plain := dispense(t, KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: &fakeAnnouncer{}}).(*RouteAnnouncerClient)
	if got, err := plain.Sessions(ctx); err != nil || len(got) != 0 {
		t.Errorf("an announcer without sessions: %+v, %v; want none", got, err)
	}
	old := dispense(t, KindRouteAnnouncer, &oldAnnouncerPlugin{}).(*RouteAnnouncerClient)
	if got, err := old.Sessions(ctx); err != nil || len(got) != 0 {
		t.Errorf("an announcer without the call: %+v, %v; want none and no error", got, err)
	}
}

// paramsAnnouncer is fakeAnnouncer with per-VIP parameters: {"med": N},
// N > 0.
type paramsAnnouncer struct {
	fakeAnnouncer
	parses int
}

type medParam struct {
	MED int `json:"med"`
}

func (a *paramsAnnouncer) ParseParams(js []byte) (any, error) {
	a.mu.Lock()
	a.parses++
	a.mu.Unlock()
	var mp medParam
	if err := DecodeConfig(js, &mp); err != nil {
		return nil, err
	}
	if mp.MED <= 0 {
		return nil, &ConfigError{Attribute: "med", Message: "must be positive"}
	}
	return &mp, nil
}

// TestRouteAnnouncerParams: a route's VIP and parameters reach the plugin,
// the parameters as what ParseParams made of them, parsed once per
// distinct block and shared by its routes; ValidateParams reports
// refusals by attribute; an announcer without ParamsParser refuses any
// parameter.
func TestRouteAnnouncerParams(t *testing.T) {
	impl := &paramsAnnouncer{}
	c := dispense(t, KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: impl}).(*RouteAnnouncerClient)
	ctx := context.Background()
	routes := []Route{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), VIP: "web", ParamsJSON: []byte(`{"med":10}`)},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128"), VIP: "web", ParamsJSON: []byte(`{"med":10}`)},
		{Prefix: netip.MustParsePrefix("192.0.2.11/32"), VIP: "api", ParamsJSON: []byte(`{"med":20}`)},
		{Prefix: netip.MustParsePrefix("192.0.2.12/32"), VIP: "plain"},
	}
	for range 3 {
		if err := c.SetRoutes(ctx, routes); err != nil {
			t.Fatal(err)
		}
	}
	impl.mu.Lock()
	got, parses := impl.routes, impl.parses
	impl.mu.Unlock()
	if parses != 2 {
		t.Errorf("ParseParams called %d times for 2 distinct blocks over 3 calls, want 2", parses)
	}
	want := []any{&medParam{10}, &medParam{10}, &medParam{20}, nil}
	for i, r := range got {
		if r.VIP != routes[i].VIP || string(r.ParamsJSON) != string(routes[i].ParamsJSON) || !reflect.DeepEqual(r.Params, want[i]) {
			t.Errorf("route %d: VIP %q, params %s -> %#v; want %q, %s -> %#v", i, r.VIP, r.ParamsJSON, r.Params, routes[i].VIP, routes[i].ParamsJSON, want[i])
		}
	}
	if got[0].Params != got[1].Params {
		t.Error("two routes of one block got two parsed values")
	}
	var ce *ConfigError
	if err := c.ValidateParams(ctx, []byte(`{"med":0}`)); !errors.As(err, &ce) || ce.Attribute != "med" {
		t.Errorf("ValidateParams(med 0) = %v", err)
	}
	if err := c.ValidateParams(ctx, []byte(`{"med":5}`)); err != nil {
		t.Errorf("ValidateParams(med 5) = %v", err)
	}
	bad := []Route{{Prefix: netip.MustParsePrefix("192.0.2.13/32"), VIP: "bad", ParamsJSON: []byte(`{"med":-1}`)}}
	if err := c.SetRoutes(ctx, bad); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("SetRoutes with refused parameters = %v, want an error naming the VIP", err)
	}
	impl.mu.Lock()
	if len(impl.routes) != len(routes) {
		t.Errorf("a refused set replaced the routes: %+v", impl.routes)
	}
	impl.mu.Unlock()

	plain := dispense(t, KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: &fakeAnnouncer{}}).(*RouteAnnouncerClient)
	if err := plain.ValidateParams(ctx, []byte(`{"med":5}`)); !errors.As(err, &ce) || ce.Attribute != "med" || !strings.Contains(ce.Message, "route announcer takes no parameters") {
		t.Errorf("an announcer without parameters accepted some: %v", err)
	}
	if err := plain.ValidateParams(ctx, nil); err != nil {
		t.Errorf("an announcer without parameters refused none: %v", err)
	}
}

func TestDecodeConfigEmpty(t *testing.T) {
	v := struct{ A int }{A: 7}
	if err := DecodeConfig(nil, &v); err != nil || v.A != 7 {
		t.Errorf("DecodeConfig(nil) = %v and changed the value to %+v", err, v)
	}
}

// BenchmarkCheck10000 is one health-check tick of 10,000 targets through
// gRPC in process (the marshalling cost the host and plugin pay per tick,
// without probing).
func BenchmarkCheck10000(b *testing.B) {
	c := grpcHealthChecker(b, &fakeChecker{})
	ts := targets(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CheckBatch(context.Background(), nil, ts, time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMain(m *testing.M) {
	// The test binary doubles as a plugin process (see process_test.go).
	switch os.Getenv(helperEnv) {
	case "healthchecker":
		ServeHealthChecker(&fakeChecker{})
		os.Exit(0)
	case "routeannouncer":
		ServeRouteAnnouncer(&stoppingAnnouncer{file: os.Getenv(stopFileEnv), hang: os.Getenv(stopHangEnv) != ""})
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestUnjoin(t *testing.T) {
	a, b := &ConfigError{Attribute: "a"}, &ConfigError{Attribute: "b"}
	for _, tc := range []struct {
		err  error
		want []error
	}{
		{nil, nil},
		{a, []error{a}},
		{errors.Join(a, b), []error{a, b}},
		{fmt.Errorf("plugin %q: configuration refused: %w", "x", errors.Join(a, b)), []error{a, b}},
	} {
		if got := Unjoin(tc.err); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Unjoin(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	var e ConfigErrors
	if e.Err() != nil {
		t.Errorf("no refusal: %v", e.Err())
	}
	e.Add("port", "%d: must be from %d to %d", 70000, 1, 65535)
	e.Add("", "the attribute %q is required", "address")
	got := Unjoin(e.Err())
	want := []*ConfigError{{Attribute: "port", Message: "70000: must be from 1 to 65535"}, {Message: `the attribute "address" is required`}}
	if len(got) != len(want) {
		t.Fatalf("Err() joins %v, want %v", got, want)
	}
	for i, err := range got {
		var ce *ConfigError
		if !errors.As(err, &ce) || *ce != *want[i] {
			t.Errorf("refusal %d: %v, want %v", i, err, want[i])
		}
	}
}
