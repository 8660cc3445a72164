package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// router is a second gobgp server on loopback standing for the router:
// it accepts the speaker's sessions (passive) on its own port and shows
// what it learnt.
type router struct {
	srv  *server.BgpServer
	port int

	mu     sync.Mutex
	up     map[string]bool
	events []string // "127.0.0.1 up", "::1 down", in order
}

func newRouter(t *testing.T) *router {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := &router{srv: server.NewBgpServer(server.LoggerOption(&gobgpLog{log: hclog.NewNullLogger(), failed: func(string, string) {}})), port: port, up: map[string]bool{}}
	go r.srv.Serve()
	t.Cleanup(r.srv.Stop)
	ctx := context.Background()
	if err := r.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "10.0.0.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1", "::1"},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := r.srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(ev *api.WatchEventResponse) {
		pe := ev.GetPeer()
		if pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
			return
		}
		st := pe.GetPeer().GetState()
		what := "down"
		if st.GetSessionState() == api.PeerState_ESTABLISHED {
			what = "up"
		}
		r.mu.Lock()
		if r.up[st.GetNeighborAddress()] != (what == "up") {
			r.up[st.GetNeighborAddress()] = what == "up"
			r.events = append(r.events, st.GetNeighborAddress()+" "+what)
		}
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"127.0.0.1", "::1"} {
		afi := api.Family_AFI_IP
		if strings.Contains(a, ":") {
			afi = api.Family_AFI_IP6
		}
		if err := r.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: a, PeerAsn: 65001},
			Transport: &api.Transport{PassiveMode: true},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1, IdleHoldTimeAfterReset: 1}},
			AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// peerEvents returns the sessions' ups and downs so far.
func (r *router) peerEvents() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// routes lists what the router learnt, one line per prefix:
// "192.0.2.10/32 nh=127.0.0.1 as=[65001] comm=[65000:100] large=[] med=10".
func (r *router) routes(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		err := r.srv.ListPath(context.Background(), &api.ListPathRequest{
			TableType: api.TableType_GLOBAL, Family: &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST},
		}, func(d *api.Destination) {
			for _, p := range d.GetPaths() {
				attrs, err := apiutil.GetNativePathAttributes(p)
				if err != nil {
					t.Error(err)
					return
				}
				var nh, as string
				var comm, large []string
				med := "-"
				for _, a := range attrs {
					switch a := a.(type) {
					case *bgp.PathAttributeNextHop:
						nh = a.Value.String()
					case *bgp.PathAttributeMpReachNLRI:
						nh = a.Nexthop.String()
					case *bgp.PathAttributeAsPath:
						as = fmt.Sprint(a.Value[0].GetAS())
					case *bgp.PathAttributeCommunities:
						for _, c := range a.Value {
							comm = append(comm, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
						}
					case *bgp.PathAttributeLargeCommunities:
						for _, l := range a.Values {
							large = append(large, l.String())
						}
					case *bgp.PathAttributeMultiExitDisc:
						med = fmt.Sprint(a.Value)
					}
				}
				out = append(out, fmt.Sprintf("%s nh=%s as=%s comm=%v large=%v med=%s", d.GetPrefix(), nh, as, comm, large, med))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// waitRoutes waits until the router has exactly want.
func (r *router) waitRoutes(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := r.routes(t)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router has\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds (or fails the test after a generous
// bound: a wait, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newTestSpeaker configures a speaker peering with r over IPv4 and IPv6
// loopback.
func newTestSpeaker(t *testing.T, r *router, extra string) *speaker {
	t.Helper()
	s := newSpeaker(hclog.NewNullLogger())
	t.Cleanup(func() { s.Stop(context.Background()) })
	if err := s.Configure([]byte(settingsFor(r, "3s", extra))); err != nil {
		t.Fatal(err)
	}
	return s
}

func settingsFor(r *router, hold6, extra string) string {
	return fmt.Sprintf(`{"local_as": 65001, "router_id": "10.0.0.2", %s "neighbors": [
		{"address": "127.0.0.1", "peer_as": 65000, "port": %d, "hold_time": "3s", "keepalive": "1s", "connect_retry": "1s"},
		{"address": "::1", "peer_as": 65000, "port": %d, "hold_time": %q, "connect_retry": "1s"}]}`, extra, r.port, r.port, hold6)
}

func mustParams(t *testing.T, js string) any {
	t.Helper()
	p, err := parseParams([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAnnounce: what SetRoutes asks for reaches a real BGP peer over IPv4
// and IPv6 sessions, with communities, large communities and MED; a
// changed route is re-announced, a dropped one withdrawn, WithdrawAll
// withdraws everything.
func TestAnnounce(t *testing.T) {
	r := newRouter(t)
	s := newTestSpeaker(t, r, `"communities": ["65001:1"],`)
	ctx := context.Background()
	web := mustParams(t, `{"communities": ["65000:100"], "large_communities": ["65000:1:1"], "med": 10}`)
	routes := []sdk.Route{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), VIP: "web", Params: web},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128"), VIP: "web", Params: web},
		{Prefix: netip.MustParsePrefix("192.0.2.11/32"), VIP: "api"},
	}
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t,
		"192.0.2.10/32 nh=127.0.0.1 as=[65001] comm=[65001:1 65000:100] large=[65000:1:1] med=10",
		"192.0.2.11/32 nh=127.0.0.1 as=[65001] comm=[65001:1] large=[] med=-",
		"2001:db8::10/128 nh=::1 as=[65001] comm=[65001:1 65000:100] large=[65000:1:1] med=10",
	)
	routes[2].Params = mustParams(t, `{"med": 20}`)
	if err := s.SetRoutes(ctx, routes[1:]); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t,
		"192.0.2.11/32 nh=127.0.0.1 as=[65001] comm=[65001:1] large=[] med=20",
		"2001:db8::10/128 nh=::1 as=[65001] comm=[65001:1 65000:100] large=[65000:1:1] med=10",
	)
	if err := s.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t)
}

// TestSessions: the speaker reports each neighbor's session, its state
// and the prefixes it announces to it, as gobgp has them; sessions coming
// up and routes announced and withdrawn are logged at info with peer=,
// state=, prefix= and vip=.
func TestSessions(t *testing.T) {
	r := newRouter(t)
	s := newTestSpeaker(t, r, "")
	var out logLines
	// No neighbor exists before the first SetRoutes: nothing logs yet.
	s.log = hclog.New(&hclog.LoggerOptions{Output: &out})
	s.peers.log = s.log
	ctx := context.Background()
	sessions := func() string {
		ss, err := s.Sessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ss)
	}
	if got := sessions(); got != "[]" {
		t.Fatalf("sessions before any route: %s, want none (no neighbor is added before the first SetRoutes)", got)
	}
	routes := []sdk.Route{
		{Prefix: netip.MustParsePrefix("192.0.2.10/32"), VIP: "web"},
		{Prefix: netip.MustParsePrefix("192.0.2.11/32"), VIP: "api"},
		{Prefix: netip.MustParsePrefix("2001:db8::10/128"), VIP: "web"},
	}
	if err := s.SetRoutes(ctx, routes); err != nil {
		t.Fatal(err)
	}
	want := "[{127.0.0.1 established true 2} {::1 established true 1}]"
	waitFor(t, "both sessions established with their prefixes: "+want, func() bool { return sessions() == want })
	if err := s.WithdrawAll(ctx); err != nil {
		t.Fatal(err)
	}
	want = "[{127.0.0.1 established true 0} {::1 established true 0}]"
	waitFor(t, "no prefix announced after WithdrawAll: "+want, func() bool { return sessions() == want })
	// The router has taken the withdrawals before it stops: gobgp's
	// StopBgp races with its handling of an UPDATE still arriving.
	r.waitRoutes(t)
	for _, want := range []string{
		"[INFO]  neighbor: session established: peer=127.0.0.1 state=established",
		"[INFO]  neighbor: session established: peer=::1 state=established",
		"[INFO]  route announced: prefix=192.0.2.10/32 vip=web peers=127.0.0.1",
		"[INFO]  route announced: prefix=2001:db8::10/128 vip=web peers=::1",
		"[INFO]  route withdrawn: prefix=192.0.2.11/32 vip=api peers=127.0.0.1",
	} {
		if !slices.ContainsFunc(out.get(), func(l string) bool { return strings.HasSuffix(l, want) }) {
			t.Errorf("no log line ends in %q; logged:\n\t%s", want, strings.Join(out.get(), "\n\t"))
		}
	}
}

// TestPeersAfterFirstSetRoutes: Configure alone adds no neighbor, so that
// a restarted plugin never opens a session (and sends End-of-RIB) before
// it knows what to announce.
func TestPeersAfterFirstSetRoutes(t *testing.T) {
	r := newRouter(t)
	s := newTestSpeaker(t, r, "")
	if n := countPeers(t, s); n != 0 {
		t.Fatalf("%d peers before the first SetRoutes, want 0", n)
	}
	if err := s.SetRoutes(context.Background(), []sdk.Route{{Prefix: netip.MustParsePrefix("192.0.2.10/32")}}); err != nil {
		t.Fatal(err)
	}
	if n := countPeers(t, s); n != 2 {
		t.Fatalf("%d peers after the first SetRoutes, want 2", n)
	}
	r.waitRoutes(t, "192.0.2.10/32 nh=127.0.0.1 as=[65001] comm=[] large=[] med=-")
}

func countPeers(t *testing.T, s *speaker) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, g := range s.groups {
		if err := g.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(*api.Peer) { n++ }); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestReloadKeepsSessions: a reload that changes one neighbor restarts
// that session only; one that refuses a setting changes nothing.
func TestReloadKeepsSessions(t *testing.T) {
	r := newRouter(t)
	s := newTestSpeaker(t, r, "")
	if err := s.SetRoutes(context.Background(), []sdk.Route{{Prefix: netip.MustParsePrefix("2001:db8::10/128")}}); err != nil {
		t.Fatal(err)
	}
	both := []string{"127.0.0.1 up", "::1 up"}
	waitFor(t, "both sessions", func() bool { ev := r.peerEvents(); slices.Sort(ev); return slices.Equal(ev, both) })
	if err := s.Configure([]byte(strings.Replace(settingsFor(r, "6s", ""), `"router_id": "10.0.0.2"`, `"router_id": "10.0.0.2", "listen_port": 70000`, 1))); err == nil {
		t.Fatal("listen_port 70000 accepted")
	}
	if err := s.Configure([]byte(settingsFor(r, "6s", ""))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed session to come back", func() bool {
		ev := r.peerEvents()
		return len(ev) >= 4 && ev[len(ev)-1] == "::1 up"
	})
	for _, ev := range r.peerEvents() {
		if ev == "127.0.0.1 down" {
			t.Errorf("the unchanged neighbor's session went down: %v", r.peerEvents())
		}
	}
	r.waitRoutes(t, "2001:db8::10/128 nh=::1 as=[65001] comm=[] large=[] med=-")
}

// TestStopCeases: Stop ends every session with a NOTIFICATION, and the
// router drops the routes at once.
func TestStopCeases(t *testing.T) {
	r := newRouter(t)
	s := newTestSpeaker(t, r, "")
	if err := s.SetRoutes(context.Background(), []sdk.Route{{Prefix: netip.MustParsePrefix("192.0.2.10/32")}}); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, "192.0.2.10/32 nh=127.0.0.1 as=[65001] comm=[] large=[] med=-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t)
}

// logLines is an hclog sink that keeps each line.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(string(b)))
	return len(b), nil
}

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// TestPeerLog: each reason is logged once per state change, however
// often it repeats (an unreachable neighbor alternates between two); the
// counts come with the next change; a neighbor we removed ("dying") is not
// a failure.
func TestPeerLog(t *testing.T) {
	var out logLines
	s := newSpeaker(hclog.New(&hclog.LoggerOptions{Output: &out}))
	g := &gobgpLog{log: hclog.NewNullLogger(), failed: s.failed}
	for range 3 {
		g.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Error": "i/o timeout"})
		g.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Error": "no route to host"})
	}
	g.Warn("received notification", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Code": uint8(2), "Subcode": uint8(2), "Data": []byte{}})
	g.Info("Peer Down", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.2", "Reason": "dying"})
	s.peers.signed("10.0.0.3", true)
	g.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.3", "Error": "i/o timeout"})
	s.peers.state("10.0.0.1", true)
	s.peers.state("10.0.0.1", true)
	s.peers.state("10.0.0.1", false)
	g.Debug("failed to connect", gobgplog.Fields{"Topic": "Peer", "Key": "10.0.0.1", "Error": "i/o timeout"})
	lines := out.get()
	want := []string{
		`session failed; retrying: peer=10.0.0.1 reason="connecting: i/o timeout"`,
		`session failed; retrying: peer=10.0.0.1 reason="connecting: no route to host"`,
		`session failed; retrying: peer=10.0.0.1 reason="received notification: code 2(open) subcode 2(bad peer as)"`,
		`session failed; retrying: peer=10.0.0.3 reason="connecting: i/o timeout (unreachable, or the neighbor drops our TCP MD5 signature: check the password)"`,
		`session established: peer=10.0.0.1 state=established after="connecting: i/o timeout (3×); connecting: no route to host (3×); received notification: code 2(open) subcode 2(bad peer as) (1×)"`,
		"session down: peer=10.0.0.1 state=down",
		`session failed; retrying: peer=10.0.0.1 reason="connecting: i/o timeout"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("logged\n\t%s\nwant lines ending in\n\t%s", strings.Join(lines, "\n\t"), strings.Join(want, "\n\t"))
	}
	for i := range want {
		if !strings.HasSuffix(lines[i], want[i]) {
			t.Errorf("line %d: %s\nwant it to end in %s", i, lines[i], want[i])
		}
	}
}
