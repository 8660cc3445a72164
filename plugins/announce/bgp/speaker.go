package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/xlbproject/xlb/plugins/announce/bgp/bfd"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// version is the plugin's own version, reported by Info.
const version = "0.1.0"

// speaker is the route announcer: gobgp servers, their peers and the
// paths they announce.
//
// Each neighbor has a gobgp server of its own (a group), unless the
// speaker listens (listen_port), when one server holds every neighbor:
// gobgp's graceful restart is per server, and a server that finished
// syncing with its first peer clears the restarting state of all its
// peers, so that a second peer coming up a moment later would not set
// the Forwarding State bit and its router would flush the routes it kept.
// One server per neighbor also keeps a slow peer from holding up another's
// updates.
type speaker struct {
	log   hclog.Logger
	peers *peerLog

	mu     sync.Mutex
	cfg    *settings         // applied; nil until the first Configure
	groups map[string]*group // by groupKey; none until routesSeen
	// routesSeen: a SetRoutes (or WithdrawAll) arrived since this process
	// started. Until then no peer is added, so that a restarted plugin
	// never sends End-of-RIB over an empty table (the router would flush
	// what graceful restart kept).
	routesSeen bool
	desired    []sdk.Route  // the last set asked for
	bfd        *bfd.Speaker // nil until a neighbor asks for BFD

	// bmu guards backoffs, which gobgp's log reaches (failed) from its
	// own goroutines, also while mu is held for a call into gobgp.
	bmu      sync.Mutex
	backoffs map[netip.Addr]*backoff // of every neighbor given to gobgp
}

// group is one gobgp server and the neighbors it peers with.
type group struct {
	srv       *server.BgpServer
	cancel    context.CancelFunc // ends the peer-event watch
	peers     map[netip.Addr]peerConf
	announced map[netip.Prefix]own // what srv has
}

// peerConf is what a gobgp peer was configured from.
type peerConf struct {
	neighbor
	restartTime uint32
}

// own is one path the speaker gave gobgp.
type own struct {
	key  string // what it carries, to tell whether it changed
	uuid []byte
	vip  string
}

// peerList is g's neighbors, for the log: "10.0.0.1,2001:db8::1".
func (g *group) peerList() string {
	addrs := slices.SortedFunc(maps.Keys(g.peers), netip.Addr.Compare)
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func newSpeaker(log hclog.Logger) *speaker {
	return &speaker{log: log, peers: newPeerLog(log), groups: map[string]*group{}, backoffs: map[netip.Addr]*backoff{}}
}

func (s *speaker) Describe() sdk.Info {
	return sdk.Info{Version: version, Schema: schema, Params: paramsSchema}
}

func (s *speaker) ParseParams(js []byte) (any, error) { return parseParams(js) }

// groupKey is the group of neighbor n under cfg.
func groupKey(cfg *settings, n neighbor) string {
	if cfg.ListenPort >= 0 {
		return "listening"
	}
	return n.Address.String()
}

// Configure applies a settings block (start or reload). A refused block
// changes nothing. Neighbors that did not change keep their sessions;
// changing local_as, router_id or listen_port restarts every session.
func (s *speaker) Configure(js []byte) error {
	cfg, err := parseSettings(js)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx := context.Background()
	if s.cfg != nil && (cfg.LocalAS != s.cfg.LocalAS || cfg.RouterID != s.cfg.RouterID || cfg.ListenPort != s.cfg.ListenPort) && len(s.groups) > 0 {
		s.log.Info("the speaker's identity changed: restarting every session", "local_as", cfg.LocalAS, "router_id", cfg.RouterID)
		s.stopGroups(ctx)
	}
	attrsChanged := s.cfg != nil && !sameAttrs(s.cfg, cfg)
	s.cfg = cfg
	var errs []error
	if attrsChanged {
		for _, g := range s.groups {
			errs = append(errs, s.reconcile(ctx, g))
		}
	}
	if s.routesSeen {
		errs = append(errs, s.syncPeers(ctx))
	}
	return errors.Join(errs...)
}

// newGroup starts a gobgp server.
func (s *speaker) newGroup(ctx context.Context) (*group, error) {
	g := &group{
		srv:       server.NewBgpServer(server.LoggerOption(&gobgpLog{log: s.log.Named("gobgp"), failed: s.failed})),
		peers:     map[netip.Addr]peerConf{},
		announced: map[netip.Prefix]own{},
	}
	go g.srv.Serve()
	err := g.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        s.cfg.LocalAS,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: s.cfg.ListenPort,
	}})
	if err != nil {
		g.srv.Stop()
		return nil, &sdk.ConfigError{Attribute: "listen_port", Message: "starting BGP: " + err.Error()}
	}
	wctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	if err := g.srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.peerEvent); err != nil {
		cancel()
		g.srv.Stop()
		return nil, err
	}
	return g, nil
}

// stop ends g's sessions with a Cease and its server.
func (g *group) stop() {
	g.srv.Stop()
	g.cancel()
}

// stopGroups stops every group at once (each Cease is sent as soon as
// possible).
func (s *speaker) stopGroups(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.bfd != nil {
		// AdminDown first: the router's BFD then leaves the session to
		// the Cease rather than declaring the node dead.
		sp := s.bfd
		wg.Go(func() { sp.Close() })
		s.bfd = nil
	}
	for k, g := range s.groups {
		wg.Go(g.stop)
		delete(s.groups, k)
		for a := range g.peers {
			s.dropBackoff(a)
			s.peers.forget(a.String())
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ceasing sessions: %w", ctx.Err())
	}
}

// sameAttrs reports whether a and b put the same attributes on routes.
func sameAttrs(a, b *settings) bool {
	return a.NextHop4 == b.NextHop4 && a.NextHop6 == b.NextHop6 && a.Communities.key() == b.Communities.key()
}

// SetRoutes makes gobgp announce exactly routes.
func (s *speaker) SetRoutes(ctx context.Context, routes []sdk.Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return errors.New("not configured")
	}
	s.desired = slices.Clone(routes)
	var errs []error
	for _, g := range s.groups {
		errs = append(errs, s.reconcile(ctx, g))
	}
	if !s.routesSeen {
		s.routesSeen = true
		errs = append(errs, s.syncPeers(ctx))
	}
	return errors.Join(errs...)
}

// WithdrawAll withdraws every route.
func (s *speaker) WithdrawAll(ctx context.Context) error {
	return s.SetRoutes(ctx, nil)
}

// Stop tells every peer the speaker is leaving (a Cease NOTIFICATION,
// without the graceful "N" bit of RFC 8538), so that routers drop its
// routes at once rather than keep them for the graceful-restart time.
func (s *speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopGroups(ctx)
}

// Sessions reports every neighbor's session: its state as gobgp has it,
// and the prefixes gobgp advertises to it while it is established.
func (s *speaker) Sessions(ctx context.Context) ([]sdk.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sdk.Session
	for _, g := range s.groups {
		err := g.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			st := p.GetState()
			x := sdk.Session{Peer: st.GetNeighborAddress(), Up: st.GetSessionState() == api.PeerState_ESTABLISHED,
				State: strings.ToLower(st.GetSessionState().String())}
			if x.Up {
				for _, af := range p.GetAfiSafis() {
					x.Prefixes += int(af.GetState().GetAdvertised())
				}
			}
			out = append(out, x)
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b sdk.Session) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}

// route is one path as gobgp gets it.
type route struct {
	prefix  netip.Prefix
	nextHop netip.Addr // zero: the session's local address
	attrs   attrs
	vip     string // for the log
}

func (r route) key() string {
	return r.nextHop.String() + "|" + r.attrs.key()
}

func (a attrs) key() string {
	k := fmt.Sprint(a.Communities, a.Large)
	if a.HasMED {
		k += " med " + strconv.FormatUint(uint64(a.MED), 10)
	}
	return k
}

// want is the set of paths desired now, given the settings.
func (s *speaker) want() (map[netip.Prefix]route, error) {
	out := make(map[netip.Prefix]route, len(s.desired))
	var errs []error
	for _, r := range s.desired {
		rt := route{prefix: r.Prefix.Masked(), nextHop: r.NextHop, attrs: s.cfg.Communities, vip: r.VIP}
		if !rt.nextHop.IsValid() {
			rt.nextHop = s.cfg.NextHop6
			if rt.prefix.Addr().Is4() {
				rt.nextHop = s.cfg.NextHop4
			}
		}
		if p, ok := r.Params.(*attrs); ok && p != nil {
			rt.attrs = rt.attrs.merge(*p)
		}
		own, err := parseRouteCommunities(r.Communities)
		if err != nil {
			errs = append(errs, fmt.Errorf("VIP %q, %s: %w", r.VIP, r.Prefix, err))
			continue
		}
		rt.attrs = rt.attrs.merge(own)
		if med, ok := r.Attributes["med"]; ok {
			v, err := strconv.ParseUint(med, 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("VIP %q, %s: med %q is not a number", r.VIP, r.Prefix, med))
				continue
			}
			rt.attrs.MED, rt.attrs.HasMED = uint32(v), true
		}
		out[rt.prefix] = rt
	}
	return out, errors.Join(errs...)
}

// reconcile adds to g's server the paths that are desired (of the
// families of its neighbors) and not announced, or announced with other
// attributes, and deletes the announced ones no longer desired. On an
// error the rest is still done, and announced keeps saying what gobgp has.
func (s *speaker) reconcile(ctx context.Context, g *group) error {
	want, err := s.want()
	errs := []error{err}
	var v4, v6 bool
	for a := range g.peers {
		v4, v6 = v4 || a.Is4(), v6 || a.Is6()
	}
	for p, r := range want {
		if p.Addr().Is4() && !v4 || p.Addr().Is6() && !v6 {
			delete(want, p)
			continue
		}
		if cur, ok := g.announced[p]; ok && cur.key == r.key() {
			continue
		}
		path, err := r.path()
		if err == nil {
			var resp *api.AddPathResponse
			if resp, err = g.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err == nil {
				// A path for the same prefix replaces the one gobgp had.
				g.announced[p] = own{key: r.key(), uuid: resp.GetUuid(), vip: r.vip}
				s.log.Info("route announced", "prefix", p.String(), "vip", r.vip, "peers", g.peerList())
				continue
			}
		}
		errs = append(errs, fmt.Errorf("announcing %s: %w", p, err))
	}
	for p, cur := range g.announced {
		if _, ok := want[p]; ok {
			continue
		}
		if err := g.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: cur.uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			continue
		}
		delete(g.announced, p)
		s.log.Info("route withdrawn", "prefix", p.String(), "vip", cur.vip, "peers", g.peerList())
	}
	return errors.Join(errs...)
}

// path builds the gobgp path for r.
func (r route) path() (*api.Path, error) {
	addr := r.prefix.Addr()
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var nlri bgp.AddrPrefixInterface
	nh := r.nextHop
	if addr.Is4() {
		if !nh.IsValid() {
			nh = netip.IPv4Unspecified()
		}
		nlri = bgp.NewIPAddrPrefix(uint8(r.prefix.Bits()), addr.String())
		attrs = append(attrs, bgp.NewPathAttributeNextHop(nh.String()))
	} else {
		if !nh.IsValid() {
			nh = netip.IPv6Unspecified()
		}
		nlri = bgp.NewIPv6AddrPrefix(uint8(r.prefix.Bits()), addr.String())
		attrs = append(attrs, bgp.NewPathAttributeMpReachNLRI(nh.String(), []bgp.AddrPrefixInterface{nlri}))
	}
	if len(r.attrs.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(r.attrs.Communities))
	}
	if len(r.attrs.Large) > 0 {
		large := make([]*bgp.LargeCommunity, len(r.attrs.Large))
		for i := range r.attrs.Large {
			large[i] = &r.attrs.Large[i]
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(large))
	}
	if r.attrs.HasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(r.attrs.MED))
	}
	return apiutil.NewPath(nlri, false, attrs, time.Now())
}

// syncPeers makes gobgp's neighbors those of the settings: removed and
// changed ones are deleted (a Cease), new and changed ones added, each
// with the paths of its family before its session starts; unchanged ones
// keep their sessions.
func (s *speaker) syncPeers(ctx context.Context) error {
	want := map[netip.Addr]peerConf{}
	keys := map[string]bool{}
	for _, n := range s.cfg.Neighbors {
		want[n.Address] = peerConf{n, s.cfg.RestartTime}
		keys[groupKey(s.cfg, n)] = true
	}
	var errs []error
	for k, g := range s.groups {
		for a, pc := range g.peers {
			if w, ok := want[a]; ok && w == pc && groupKey(s.cfg, w.neighbor) == k {
				continue
			}
			// A neighbor waiting out its backoff is already out of gobgp.
			if !s.dropBackoff(a) {
				if err := g.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
					errs = append(errs, fmt.Errorf("neighbor %s: removing: %w", a, err))
					continue
				}
			}
			if pc.BFD.Enabled {
				s.bfd.RemovePeer(a)
			}
			delete(g.peers, a)
			s.peers.forget(a.String())
		}
		if len(g.peers) == 0 && !keys[k] {
			g.stop()
			delete(s.groups, k)
		}
	}
	// Every server is started before any peer is added: gobgp's StartBgp
	// writes package variables its running servers read (the same values
	// each time). A server is kept for a neighbor whose settings changed,
	// so only a neighbor new in a reload starts one next to running ones.
	for k := range keys {
		if s.groups[k] != nil {
			continue
		}
		g, err := s.newGroup(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.groups[k] = g
	}
	for i, n := range s.cfg.Neighbors {
		k := groupKey(s.cfg, n)
		g := s.groups[k]
		if g == nil {
			continue
		}
		if _, ok := g.peers[n.Address]; ok {
			continue
		}
		g.peers[n.Address] = want[n.Address]
		s.peers.signed(n.Address.String(), n.Password != "")
		if n.BFD.Enabled {
			errs = append(errs, s.addBFD(n))
		}
		// The paths first: the session's first UPDATEs and End-of-RIB
		// carry them all.
		errs = append(errs, s.reconcile(ctx, g))
		s.setBackoff(n)
		if err := g.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
			s.dropBackoff(n.Address)
			delete(g.peers, n.Address)
			if len(g.peers) == 0 {
				g.stop()
				delete(s.groups, k)
			}
			errs = append(errs, &sdk.ConfigError{Attribute: fmt.Sprintf("neighbors[%d]", i), Message: "adding the neighbor: " + err.Error()})
		}
	}
	return errors.Join(errs...)
}

// peer is gobgp's configuration of neighbor n.
func (s *speaker) peer(n neighbor) *api.Peer {
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if n.Address.Is6() {
		family.Afi = api.Family_AFI_IP6
	}
	gr := s.cfg.RestartTime > 0
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: n.Address.String(), PeerAsn: n.PeerAS, AuthPassword: n.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(n.HoldTime / time.Second),
			KeepaliveInterval: uint64(n.Keepalive / time.Second),
			ConnectRetry:      uint64(n.ConnectRetry / time.Second),
			// After a ResetPeer (BFD down) gobgp waits this long before it
			// tries again (its default is 30 s), unless the backoff has
			// taken the failed peer out first.
			IdleHoldTimeAfterReset: uint64(n.ConnectRetry / time.Second),
		}},
		Transport: &api.Transport{RemotePort: uint32(n.Port)},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: family, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr}},
		}},
	}
	if n.MultihopTTL > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(n.MultihopTTL)}
	}
	if gr {
		// RFC 4724: a restarting speaker sets the Restart State bit and,
		// per family, the Forwarding State bit; without F the router
		// flushes the routes it kept while the plugin was down. gobgp sets
		// both when LocalRestarting, and then defers its own updates until
		// each peer's End-of-RIB (at most DeferralTime). Every start of the
		// plugin is treated as a restart: the data plane (xlbd) forwarded
		// all along, and on a first start the router has nothing stale.
		p.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     s.cfg.RestartTime,
			LocalRestarting: true,
			DeferralTime:    s.cfg.RestartTime,
		}
	}
	return p
}

// peerEvent records a session's state changes from gobgp's watch.
func (s *speaker) peerEvent(ev *api.WatchEventResponse) {
	pe := ev.GetPeer()
	if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
		return
	}
	st := pe.GetPeer().GetState()
	up := st.GetSessionState() == api.PeerState_ESTABLISHED
	if up {
		s.established(st.GetNeighborAddress())
	}
	s.peers.state(st.GetNeighborAddress(), up)
}

// addBFD starts n's BFD session (and the BFD speaker with the first). A
// session that goes down after being up means the neighbor (or the path
// to it) died: the BGP session is reset rather than left to its hold time.
func (s *speaker) addBFD(n neighbor) error {
	if s.bfd == nil {
		sp := bfd.New(bfd.Options{Logger: slog.New(hclogHandler{log: s.log.Named("bfd")})})
		s.bfd = sp
		go s.bfdEvents(sp)
	}
	err := s.bfd.AddPeer(bfd.Peer{Remote: n.Address, MinRx: n.BFD.MinRx, MinTx: n.BFD.MinTx, Multiplier: n.BFD.Multiplier})
	if err != nil {
		return fmt.Errorf("neighbor %s: BFD: %w", n.Address, err)
	}
	return nil
}

func (s *speaker) bfdEvents(sp *bfd.Speaker) {
	up := map[netip.Addr]bool{}
	for ev := range sp.Events() {
		was := up[ev.Remote]
		up[ev.Remote] = ev.State == bfd.Up
		switch {
		case ev.State == bfd.Up && !was:
			s.log.Info("neighbor: BFD up", "peer", ev.Remote)
		case ev.State != bfd.Up && was:
			s.log.Warn("neighbor: BFD down: resetting the BGP session", "peer", ev.Remote, "state", ev.State, "diag", ev.Diag)
			s.mu.Lock()
			for _, g := range s.groups {
				if _, ok := g.peers[ev.Remote]; ok {
					g.srv.ResetPeer(context.Background(), &api.ResetPeerRequest{Address: ev.Remote.String(), Communication: "BFD down"})
				}
			}
			s.mu.Unlock()
		}
	}
}
