package sdk

import (
	"context"
	"time"

	"github.com/hashicorp/go-plugin"
	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// HealthChecker probes backends. The host schedules (interval, rise, fall)
// and sends a batch of targets per tick; Check probes them concurrently,
// each bounded by ctx's deadline (the check timeout), and returns one
// Result per target in the same order. A result left out is reported as
// StatusUnknown, which makes the host hold that backend's last known health.
type HealthChecker interface {
	Check(ctx context.Context, targets []Target) []Result
}

// Target is one backend to probe.
type Target struct {
	ID      uint64 // assigned by the host, echoed in Result.ID
	Name    string // the backend's name, for messages
	Address string // an IP literal or a host name
	Port    uint16 // 0: the check set none (the checker's default)
	// Params is what ParseParams returned for the health_check block
	// checking this target (shared by the targets of that block: read
	// only); nil for a checker without ParamsParser.
	Params any
}

// Status is a probe's verdict.
type Status uint8

const (
	StatusUnknown Status = iota // no verdict: the host holds the last known health
	StatusPass
	StatusFail
)

func (s Status) String() string {
	switch s {
	case StatusPass:
		return "pass"
	case StatusFail:
		return "fail"
	}
	return "unknown"
}

// Result is the outcome of probing one Target.
type Result struct {
	ID      uint64 // the Target's ID (the SDK sets it from the target's position)
	Status  Status
	Message string // why it failed ("connection refused", "status 503")
	Latency time.Duration
}

// ServeHealthChecker serves impl as this process's plugin until the host
// stops it. impl may also implement Describer and Configurer.
func ServeHealthChecker(impl HealthChecker) {
	serve(KindHealthChecker, &HealthCheckerPlugin{Impl: impl})
}

// HealthCheckerPlugin is the go-plugin plugin for the health-checker kind:
// the plugin side sets Impl, the host side leaves it nil.
type HealthCheckerPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl HealthChecker
}

func (p *HealthCheckerPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterHealthCheckerServer(s, &healthCheckerServer{impl: p.Impl, params: newParamsCache(p.Impl, "this health check")})
	return nil
}

func (p *HealthCheckerPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &HealthCheckerClient{c: pluginpb.NewHealthCheckerClient(c)}, nil
}

type healthCheckerServer struct {
	pluginpb.UnimplementedHealthCheckerServer
	impl   HealthChecker
	params *paramsCache
}

func (s *healthCheckerServer) ValidateParams(_ context.Context, req *pluginpb.ValidateParamsRequest) (*pluginpb.ValidateParamsResponse, error) {
	return s.params.validate(req), nil
}

func (s *healthCheckerServer) Info(context.Context, *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	return info(KindHealthChecker, s.impl), nil
}

func (s *healthCheckerServer) Configure(_ context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	return configure(s.impl, req), nil
}

func (s *healthCheckerServer) Check(ctx context.Context, req *pluginpb.CheckRequest) (*pluginpb.CheckResponse, error) {
	params, err := s.params.parse(req.GetParamsJson())
	if err != nil {
		// The host validated these parameters when it loaded them, so this
		// is a plugin replaced by one that disagrees: no verdict (the host
		// holds health and reports the error) rather than failing backends.
		return nil, status.Errorf(codes.InvalidArgument, "health-check parameters refused: %v", err)
	}
	pt := req.GetTargets()
	targets := make([]Target, len(pt))
	for i, t := range pt {
		targets[i] = Target{ID: t.GetId(), Name: t.GetName(), Address: t.GetAddress(), Port: uint16(t.GetPort()), Params: params}
	}
	if d := req.GetTimeout().AsDuration(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	results := s.impl.Check(ctx, targets)
	// One result per target, in order, whatever impl returned: the host
	// matches them by position.
	resp := &pluginpb.CheckResponse{Results: make([]*pluginpb.Result, len(targets))}
	for i, t := range targets {
		r := Result{Status: StatusUnknown, Message: "the plugin returned no result for this target"}
		if i < len(results) {
			r = results[i]
		}
		resp.Results[i] = &pluginpb.Result{
			Id:      t.ID,
			Status:  pluginpb.Status(r.Status),
			Message: r.Message,
			Latency: durationpb.New(r.Latency),
		}
	}
	return resp, nil
}

// HealthCheckerClient is the host's handle on a health-checker plugin.
type HealthCheckerClient struct {
	c pluginpb.HealthCheckerClient
}

// Info asks the plugin who it is.
func (c *HealthCheckerClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pluginpb.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	return infoFromPB(r), nil
}

// Configure sends the evaluated configuration (a JSON object). A refusal
// is one or more *ConfigError joined with errors.Join.
func (c *HealthCheckerClient) Configure(ctx context.Context, config []byte) error {
	return configureClient(ctx, c.c.Configure, config)
}

// ValidateParams asks the plugin whether it accepts one health_check
// block's parameters (a JSON object). A refusal is one or more
// *ConfigError joined with errors.Join; any other error means the call
// failed.
func (c *HealthCheckerClient) ValidateParams(ctx context.Context, params []byte) error {
	return validateParamsClient(ctx, c.c.ValidateParams, params)
}

// CheckBatch probes targets, all checked by one health_check block whose
// parameters are params (a JSON object), with a per-probe timeout. The
// results are one per target, in order; an error means the call failed
// (the plugin is gone, or ctx ended) and no result is known. Target.Params
// is not sent: params is.
func (c *HealthCheckerClient) CheckBatch(ctx context.Context, params []byte, targets []Target, timeout time.Duration) ([]Result, error) {
	req := &pluginpb.CheckRequest{Targets: make([]*pluginpb.Target, len(targets)), ParamsJson: params}
	// One backing array for the whole batch rather than one allocation per
	// target.
	pts := make([]pluginpb.Target, len(targets))
	for i, t := range targets {
		pts[i].Id, pts[i].Name, pts[i].Address, pts[i].Port = t.ID, t.Name, t.Address, uint32(t.Port)
		req.Targets[i] = &pts[i]
	}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	resp, err := c.c.Check(ctx, req)
	if err != nil {
		return nil, err
	}
	results := make([]Result, len(targets))
	pr := resp.GetResults()
	for i, t := range targets {
		results[i] = Result{ID: t.ID, Status: StatusUnknown, Message: "the plugin returned no result for this target"}
		if i < len(pr) {
			results[i].Status = Status(pr[i].GetStatus())
			results[i].Message = pr[i].GetMessage()
			results[i].Latency = pr[i].GetLatency().AsDuration()
		}
	}
	return results, nil
}

var _ plugin.GRPCPlugin = (*HealthCheckerPlugin)(nil)
