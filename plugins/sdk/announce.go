package sdk

import (
	"context"
	"fmt"
	"net/netip"

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

// Route is one prefix to announce.
type Route struct {
	Prefix      netip.Prefix
	NextHop     netip.Addr        // zero: the announcer's own address
	Communities []string          // "asn:value" (or large "a:b:c")
	Attributes  map[string]string // announcer-specific (med, local_pref, ...)
}

// ServeRouteAnnouncer serves impl as this process's plugin until the host
// stops it. impl may also implement Describer and Configurer.
func ServeRouteAnnouncer(impl RouteAnnouncer) {
	serve(KindRouteAnnouncer, &RouteAnnouncerPlugin{Impl: impl})
}

// RouteAnnouncerPlugin is the go-plugin plugin for the route-announcer kind.
type RouteAnnouncerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl RouteAnnouncer
}

func (p *RouteAnnouncerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterRouteAnnouncerServer(s, &routeAnnouncerServer{impl: p.Impl})
	return nil
}

func (p *RouteAnnouncerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &RouteAnnouncerClient{c: pluginpb.NewRouteAnnouncerClient(c)}, nil
}

type routeAnnouncerServer struct {
	pluginpb.UnimplementedRouteAnnouncerServer
	impl RouteAnnouncer
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
		routes[i] = Route{Prefix: p, Communities: r.GetCommunities(), Attributes: r.GetAttributes()}
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
		m := &pluginpb.Route{Prefix: r.Prefix.String(), Communities: r.Communities, Attributes: r.Attributes}
		if r.NextHop.IsValid() {
			m.NextHop = r.NextHop.String()
		}
		req.Routes[i] = m
	}
	_, err := c.c.SetRoutes(ctx, req)
	return err
}

// WithdrawAll withdraws every route the plugin announces.
func (c *RouteAnnouncerClient) WithdrawAll(ctx context.Context) error {
	_, err := c.c.WithdrawAll(ctx, &pluginpb.WithdrawAllRequest{})
	return err
}

var (
	_ plugin.GRPCPlugin = (*RouteAnnouncerPlugin)(nil)
	_ RouteAnnouncer    = (*RouteAnnouncerClient)(nil)
)
