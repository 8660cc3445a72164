package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// version is the plugin's own version, reported by Info.
const version = "0.1.0"

// speaker is the route announcer: one embedded gobgp server, its peers
// and the paths it announces.
type speaker struct {
	log   hclog.Logger
	peers *peerLog

	mu  sync.Mutex
	srv *server.BgpServer // nil until the first Configure
	cfg *settings         // applied
	// added are the neighbors gobgp has, with the graceful-restart time
	// they were given; none until routesSeen.
	added map[netip.Addr]peerConf
	// routesSeen: a SetRoutes (or WithdrawAll) arrived since this process
	// started. Until then no peer is added, so that a restarted plugin
	// never sends End-of-RIB over an empty table (the router would flush
	// what graceful restart kept).
	routesSeen bool
	desired    []sdk.Route          // the last set asked for
	announced  map[netip.Prefix]own // what gobgp has
	cancel     context.CancelFunc   // ends the peer-event watch
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
}

func newSpeaker(log hclog.Logger) *speaker {
	return &speaker{log: log, peers: newPeerLog(log), added: map[netip.Addr]peerConf{}, announced: map[netip.Prefix]own{}}
}

func (s *speaker) Describe() sdk.Info {
	return sdk.Info{Version: version, Schema: schema, Params: paramsSchema}
}

func (s *speaker) ParseParams(js []byte) (any, error) { return parseParams(js) }

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
	if s.srv != nil && (cfg.LocalAS != s.cfg.LocalAS || cfg.RouterID != s.cfg.RouterID || cfg.ListenPort != s.cfg.ListenPort) {
		s.log.Info("the speaker's identity changed: restarting every session", "local_as", cfg.LocalAS, "router_id", cfg.RouterID)
		if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
			return err
		}
		clear(s.added)
		clear(s.announced)
		if err := s.start(ctx, cfg); err != nil {
			return err
		}
	}
	if s.srv == nil {
		s.srv = server.NewBgpServer(server.LoggerOption(&gobgpLog{log: s.log.Named("gobgp"), peers: s.peers}))
		go s.srv.Serve()
		if err := s.start(ctx, cfg); err != nil {
			s.srv.Stop()
			s.srv = nil
			return err
		}
		wctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		if err := s.srv.WatchEvent(wctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, s.peerEvent); err != nil {
			return err
		}
	}
	attrsChanged := s.cfg != nil && !sameAttrs(s.cfg, cfg)
	s.cfg = cfg
	var errs []error
	if attrsChanged {
		errs = append(errs, s.reconcile(ctx))
	}
	if s.routesSeen {
		errs = append(errs, s.syncPeers(ctx))
	}
	return errors.Join(errs...)
}

func (s *speaker) start(ctx context.Context, cfg *settings) error {
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        cfg.LocalAS,
		RouterId:   cfg.RouterID.String(),
		ListenPort: cfg.ListenPort,
	}})
	if err != nil {
		return &sdk.ConfigError{Attribute: "listen_port", Message: "starting BGP: " + err.Error()}
	}
	return nil
}

// sameAttrs reports whether a and b put the same attributes on routes.
func sameAttrs(a, b *settings) bool {
	return a.NextHop4 == b.NextHop4 && a.NextHop6 == b.NextHop6 && a.Communities.key() == b.Communities.key()
}

// SetRoutes makes gobgp announce exactly routes.
func (s *speaker) SetRoutes(ctx context.Context, routes []sdk.Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return errors.New("not configured")
	}
	s.desired = slices.Clone(routes)
	err := s.reconcile(ctx)
	if !s.routesSeen {
		s.routesSeen = true
		err = errors.Join(err, s.syncPeers(ctx))
	}
	return err
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
	if s.srv == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.srv.StopBgp(context.Background(), &api.StopBgpRequest{}) }()
	select {
	case err := <-done:
		s.cancel()
		return err
	case <-ctx.Done():
		return fmt.Errorf("ceasing sessions: %w", ctx.Err())
	}
}

// route is one path as gobgp gets it.
type route struct {
	prefix  netip.Prefix
	nextHop netip.Addr // zero: the session's local address
	attrs   attrs
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
		rt := route{prefix: r.Prefix.Masked(), nextHop: r.NextHop, attrs: s.cfg.Communities}
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

// reconcile adds to gobgp the paths that are desired and not announced
// (or announced with other attributes) and deletes the announced ones no
// longer desired. On an error the rest is still done, and announced keeps
// saying what gobgp has.
func (s *speaker) reconcile(ctx context.Context) error {
	want, err := s.want()
	errs := []error{err}
	for _, p := range slices.SortedFunc(maps.Keys(want), netip.Prefix.Compare) {
		r := want[p]
		if cur, ok := s.announced[p]; ok && cur.key == r.key() {
			continue
		}
		path, err := r.path()
		if err == nil {
			var resp *api.AddPathResponse
			if resp, err = s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err == nil {
				// A path for the same prefix replaces the one gobgp had.
				s.announced[p] = own{key: r.key(), uuid: resp.GetUuid()}
				continue
			}
		}
		errs = append(errs, fmt.Errorf("announcing %s: %w", p, err))
	}
	for _, p := range slices.SortedFunc(maps.Keys(s.announced), netip.Prefix.Compare) {
		if _, ok := want[p]; ok {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: s.announced[p].uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			continue
		}
		delete(s.announced, p)
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
// changed ones are deleted (a Cease), new and changed ones added;
// unchanged ones keep their sessions.
func (s *speaker) syncPeers(ctx context.Context) error {
	want := map[netip.Addr]neighbor{}
	for _, n := range s.cfg.Neighbors {
		want[n.Address] = n
	}
	var errs []error
	for _, a := range slices.SortedFunc(maps.Keys(s.added), netip.Addr.Compare) {
		if n, ok := want[a]; ok && (peerConf{n, s.cfg.RestartTime}) == s.added[a] {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("neighbor %s: removing: %w", a, err))
			continue
		}
		delete(s.added, a)
		s.peers.forget(a.String())
	}
	for i, n := range s.cfg.Neighbors {
		if _, ok := s.added[n.Address]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(n)}); err != nil {
			errs = append(errs, &sdk.ConfigError{Attribute: fmt.Sprintf("neighbors[%d]", i), Message: "adding the neighbor: " + err.Error()})
			continue
		}
		s.added[n.Address] = peerConf{n, s.cfg.RestartTime}
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
			// After a NOTIFICATION gobgp waits this long before it tries
			// again (its default is 30 s).
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
	s.peers.state(st.GetNeighborAddress(), st.GetSessionState() == api.PeerState_ESTABLISHED)
}
