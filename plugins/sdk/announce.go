package sdk

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RouteAnnouncer announces VIP prefixes (BGP and the like). It is
// level-triggered: SetRoutes carries the full desired set, and the plugin
// announces those and withdraws everything else it announced.
type RouteAnnouncer interface {
	SetRoutes(ctx context.Context, routes []Route) error
	WithdrawAll(ctx context.Context) error
}

// SessionReporter is implemented by an announcer that has sessions with
// peers (a BGP speaker): the host asks for them every few seconds, for
// xlbd's status, metrics and logs.
type SessionReporter interface {
	Sessions(ctx context.Context) ([]Session, error)
}

// Session is one session of an announcer with a peer.
type Session struct {
	Peer string
	// State is the session's state in the protocol's terms, lower case
	// (BGP: idle, connect, active, opensent, openconfirm, established).
	State string
	Up    bool // it carries routes now (BGP: established)
	// Prefixes is how many prefixes the announcer announces to the peer.
	Prefixes int
}

// Route is one prefix to announce.
type Route struct {
	Prefix      netip.Prefix
	NextHop     netip.Addr        // zero: the announcer's own address
	Communities []string          // "asn:value" (or large "a:b:c")
	Attributes  map[string]string // announcer-specific (med, local_pref, ...)
	// VIP is the name of the VIP this prefix belongs to, for messages.
	VIP string
	// ParamsJSON is the VIP's announce block for this announcer (a JSON
	// object conformed to Info.Params; empty: none). The host sets it; the
	// plugin reads Params instead.
	ParamsJSON []byte
	// Params is what the announcer's ParseParams returned for ParamsJSON,
	// parsed once per distinct JSON and shared by the routes of that block
	// (read only); nil when ParamsJSON is empty (the VIP has no announce
	// block for this announcer) or without ParamsParser. Not
	// sent by the host's client: ParamsJSON is.
	Params any
}

// Stopper is implemented by a plugin that has something to undo before
// its process ends (a BGP speaker tells its peers it is leaving, so that
// they drop its routes at once instead of after a hold or restart time).
type Stopper interface {
	Stop(ctx context.Context) error
}

// stopTimeout bounds Stopper.Stop on SIGTERM: the host that sent it (or
// the kernel, as the parent-death signal) does not wait longer.
const stopTimeout = time.Second

// ServeRouteAnnouncer serves impl as this process's plugin until the host
// stops it. impl may also implement Describer, Configurer, ParamsParser
// and Stopper.
//
// On SIGTERM the process calls impl's Stop (if impl is a Stopper) with a
// deadline of one second and then exits with status 0. xlbd gives route
// announcers SIGTERM as their parent-death signal, so that a node whose
// xlbd dies is dropped by its routers at once; a plugin that crashes by
// itself gets no such chance, and its routes live on by whatever the
// protocol keeps them for (BGP graceful restart).
func ServeRouteAnnouncer(impl RouteAnnouncer) {
	stopOnSIGTERM(impl)
	serve(KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: impl})
}

// stopOnSIGTERM makes SIGTERM call impl's Stop, then exit(0).
func stopOnSIGTERM(impl any) {
	// The process's own stderr, which the host reads line by line, rather
	// than the gRPC stream go-plugin puts in its place once serving, which
	// the exit would cut short.
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true})
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	go func() {
		<-ch
		if s, ok := impl.(Stopper); ok {
			ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			done := make(chan error, 1)
			go func() { done <- s.Stop(ctx) }()
			// A Stop that ignores ctx does not hold the exit.
			select {
			case err := <-done:
				if err != nil {
					log.Error("SIGTERM: stopping", "error", err)
				}
			case <-ctx.Done():
				log.Error("SIGTERM: stopping did not finish in time", "timeout", stopTimeout)
			}
			cancel()
		}
		os.Exit(0)
	}()
}

// RouteAnnouncerPlugin is the go-plugin plugin for the route-announcer kind.
type RouteAnnouncerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl RouteAnnouncer
}

func (p *RouteAnnouncerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterRouteAnnouncerServer(s, &routeAnnouncerServer{impl: p.Impl, params: newParamsCache(p.Impl, "this route announcer")})
	return nil
}

func (p *RouteAnnouncerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &RouteAnnouncerClient{c: pluginpb.NewRouteAnnouncerClient(c)}, nil
}

type routeAnnouncerServer struct {
	pluginpb.UnimplementedRouteAnnouncerServer
	impl   RouteAnnouncer
	params *paramsCache
}

func (s *routeAnnouncerServer) ValidateParams(_ context.Context, req *pluginpb.ValidateParamsRequest) (*pluginpb.ValidateParamsResponse, error) {
	return s.params.validate(req), nil
}

func (s *routeAnnouncerServer) Info(context.Context, *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	return info(KindRouteAnnouncer, s.impl), nil
}

func (s *routeAnnouncerServer) Configure(_ context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	return configure(s.impl, req), nil
}

func (s *routeAnnouncerServer) SetRoutes(ctx context.Context, req *pluginpb.SetRoutesRequest) (*pluginpb.SetRoutesResponse, error) {
	routes := make([]Route, len(req.GetRoutes()))
	for i, r := range req.GetRoutes() {
		p, err := netip.ParsePrefix(r.GetPrefix())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "route %d: %v", i, err)
		}
		var params any
		if js := r.GetParamsJson(); len(js) > 0 {
			params, err = s.params.parse(js)
		}
		if err != nil {
			// The host validated these parameters when it loaded them, so
			// this is a plugin replaced by one that disagrees: refuse the
			// whole set, which keeps what is announced now.
			return nil, status.Errorf(codes.InvalidArgument, "route %d (VIP %q): parameters refused: %v", i, r.GetVip(), err)
		}
		routes[i] = Route{
			Prefix: p, Communities: r.GetCommunities(), Attributes: r.GetAttributes(),
			VIP: r.GetVip(), ParamsJSON: r.GetParamsJson(), Params: params,
		}
		if nh := r.GetNextHop(); nh != "" {
			if routes[i].NextHop, err = netip.ParseAddr(nh); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "route %d: next hop: %v", i, err)
			}
		}
	}
	if err := s.impl.SetRoutes(ctx, routes); err != nil {
		return nil, err
	}
	return &pluginpb.SetRoutesResponse{}, nil
}

func (s *routeAnnouncerServer) Sessions(ctx context.Context, _ *pluginpb.SessionsRequest) (*pluginpb.SessionsResponse, error) {
	r, ok := s.impl.(SessionReporter)
	if !ok {
		return &pluginpb.SessionsResponse{}, nil
	}
	ss, err := r.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	resp := &pluginpb.SessionsResponse{Sessions: make([]*pluginpb.Session, len(ss))}
	for i, x := range ss {
		resp.Sessions[i] = &pluginpb.Session{Peer: x.Peer, State: x.State, Up: x.Up, Prefixes: uint32(max(x.Prefixes, 0))}
	}
	return resp, nil
}

func (s *routeAnnouncerServer) WithdrawAll(ctx context.Context, _ *pluginpb.WithdrawAllRequest) (*pluginpb.WithdrawAllResponse, error) {
	if err := s.impl.WithdrawAll(ctx); err != nil {
		return nil, err
	}
	return &pluginpb.WithdrawAllResponse{}, nil
}

// RouteAnnouncerClient is the host's handle on a route-announcer plugin.
type RouteAnnouncerClient struct {
	c pluginpb.RouteAnnouncerClient
}

// Info asks the plugin who it is.
func (c *RouteAnnouncerClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pluginpb.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	return infoFromPB(r), nil
}

// Configure sends the evaluated configuration (a JSON object).
func (c *RouteAnnouncerClient) Configure(ctx context.Context, config []byte) error {
	return configureClient(ctx, c.c.Configure, config)
}

// SetRoutes replaces the desired set of routes.
func (c *RouteAnnouncerClient) SetRoutes(ctx context.Context, routes []Route) error {
	req := &pluginpb.SetRoutesRequest{Routes: make([]*pluginpb.Route, len(routes))}
	for i, r := range routes {
		if !r.Prefix.IsValid() {
			return fmt.Errorf("route %d: invalid prefix", i)
		}
		m := &pluginpb.Route{
			Prefix: r.Prefix.String(), Communities: r.Communities, Attributes: r.Attributes,
			Vip: r.VIP, ParamsJson: r.ParamsJSON,
		}
		if r.NextHop.IsValid() {
			m.NextHop = r.NextHop.String()
		}
		req.Routes[i] = m
	}
	_, err := c.c.SetRoutes(ctx, req)
	return err
}

// ValidateParams asks the plugin whether it accepts one VIP's announce
// block (a JSON object). A refusal is one or more *ConfigError joined with
// errors.Join; any other error means the call failed.
func (c *RouteAnnouncerClient) ValidateParams(ctx context.Context, params []byte) error {
	return validateParamsClient(ctx, c.c.ValidateParams, params)
}

// Sessions asks the plugin for its sessions with peers; a plugin that
// predates the call has none.
func (c *RouteAnnouncerClient) Sessions(ctx context.Context) ([]Session, error) {
	r, err := c.c.Sessions(ctx, &pluginpb.SessionsRequest{})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]Session, len(r.GetSessions()))
	for i, x := range r.GetSessions() {
		out[i] = Session{Peer: x.GetPeer(), State: x.GetState(), Up: x.GetUp(), Prefixes: int(x.GetPrefixes())}
	}
	return out, nil
}

// WithdrawAll withdraws every route the plugin announces.
func (c *RouteAnnouncerClient) WithdrawAll(ctx context.Context) error {
	_, err := c.c.WithdrawAll(ctx, &pluginpb.WithdrawAllRequest{})
	return err
}

var (
	_ plugin.GRPCPlugin = (*RouteAnnouncerPlugin)(nil)
	_ RouteAnnouncer    = (*RouteAnnouncerClient)(nil)
	_ SessionReporter   = (*RouteAnnouncerClient)(nil)
)
