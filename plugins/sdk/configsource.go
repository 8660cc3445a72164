package sdk

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/hashicorp/go-plugin"
	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ConfigSource supplies configuration documents (a watched file, an etcd
// prefix). Watch calls send with the complete current set at once and
// again after every change, until ctx ends or send fails; updates are
// level-triggered, so a document missing from one has been deleted. The
// host may call Watch again after cancelling a call, to have everything
// read anew (on SIGHUP). A source that a fleet shares also implements
// Publisher.
type ConfigSource interface {
	Watch(ctx context.Context, send func(ConfigUpdate) error) error
}

// ConfigUpdate is the complete current set of documents.
type ConfigUpdate struct {
	Revision  string // opaque (file mtime, etcd revision), for logs
	Documents []Document
	// Unavailable, when set, says why the source cannot read its store
	// now (etcd unreachable); Documents is then empty and the host keeps
	// the last ones it had. The next update without it carries the
	// complete set again.
	Unavailable string
}

// Publisher is implemented by a config source that a fleet of nodes
// shares (etcd): it carries each node's applied state to the others.
type Publisher interface {
	// Publish stores this node's state where the other nodes read it,
	// replacing what it published before. The store forgets it when the
	// node stops (etcd: a key held by a lease).
	Publish(ctx context.Context, s NodeStatus) error
	// WatchPeers calls send with every node's state, this node's
	// included, at once and after every change, until ctx ends or send
	// fails; updates are level-triggered as ConfigUpdate is.
	WatchPeers(ctx context.Context, send func(PeersUpdate) error) error
}

// ErrNotPublisher is returned by ConfigSourceClient's Publish and
// WatchPeers when the plugin does not implement Publisher.
var ErrNotPublisher = errors.New("the config source does not publish node states")

// PeersUpdate is every node's published state.
type PeersUpdate struct {
	Nodes []NodeStatus
	// Unavailable, when set, says why the states cannot be read now;
	// Nodes is then empty.
	Unavailable string
}

// NodeStatus is what one node applied: enough for the other nodes to
// check that the same inputs gave it the same tables. Its JSON form is
// what a source stores (etcdctl get shows it), so the names are stable.
type NodeStatus struct {
	Node string `json:"node"` // unique in the fleet (xlbd run -node)
	// Revision is the source revision of the documents the applied
	// configuration was built from, and SourcesDigest their digest (names
	// and contents): nodes that read the same documents compare digests,
	// whatever revision each read them at.
	Revision      string      `json:"revision"`
	SourcesDigest string      `json:"sources_digest"`
	Generation    uint64      `json:"generation"` // node-local, for people
	ConfigDigest  string      `json:"config_digest"`
	VIPs          []VIPDigest `json:"vips"`
	// RejectedRevision and Rejected are the latest change the node
	// refused, when newer than the applied one, and its diagnostics.
	RejectedRevision string    `json:"rejected_revision,omitempty"`
	Rejected         string    `json:"rejected,omitempty"`
	Updated          time.Time `json:"updated"`
	// Shards are the node's shards (VIP sharding), as applied; none: it
	// serves every VIP (or it is of a version that did not publish them).
	// Peers tell from them which shards some live node serves.
	Shards []string `json:"shards,omitempty"`
}

// VIPDigest is one VIP's table digest, and the digest of the backends
// (names and weights of those in service) it was built from: nodes that
// see different backends healthy rightly build different tables, so only
// tables built from equal backends are compared.
type VIPDigest struct {
	Name     string `json:"name"`
	Table    string `json:"table"`
	Backends string `json:"backends"`
}

// Document is one configuration document.
type Document struct {
	Name    string // where it came from, used in diagnostics
	Format  string // "hcl" or "json"
	Content []byte
}

// ServeConfigSource serves impl as this process's plugin until the host
// stops it. impl may also implement Describer and Configurer.
func ServeConfigSource(impl ConfigSource) {
	serve(KindConfigSource, &ConfigSourcePlugin{Impl: impl})
}

// ConfigSourcePlugin is the go-plugin plugin for the config-source kind.
type ConfigSourcePlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl ConfigSource
}

func (p *ConfigSourcePlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pluginpb.RegisterConfigSourceServer(s, &configSourceServer{impl: p.Impl})
	return nil
}

func (p *ConfigSourcePlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &ConfigSourceClient{c: pluginpb.NewConfigSourceClient(c)}, nil
}

type configSourceServer struct {
	pluginpb.UnimplementedConfigSourceServer
	impl ConfigSource
}

func (s *configSourceServer) Info(context.Context, *pluginpb.InfoRequest) (*pluginpb.InfoResponse, error) {
	return info(KindConfigSource, s.impl), nil
}

func (s *configSourceServer) Configure(_ context.Context, req *pluginpb.ConfigureRequest) (*pluginpb.ConfigureResponse, error) {
	return configure(s.impl, req), nil
}

func (s *configSourceServer) Watch(_ *pluginpb.WatchRequest, stream grpc.ServerStreamingServer[pluginpb.ConfigUpdate]) error {
	return s.impl.Watch(stream.Context(), func(u ConfigUpdate) error {
		m := &pluginpb.ConfigUpdate{Revision: u.Revision, Unavailable: u.Unavailable}
		for _, d := range u.Documents {
			m.Documents = append(m.Documents, &pluginpb.Document{Name: d.Name, Format: d.Format, Content: d.Content})
		}
		return stream.Send(m)
	})
}

func (s *configSourceServer) Publish(ctx context.Context, req *pluginpb.PublishRequest) (*pluginpb.PublishResponse, error) {
	p, ok := s.impl.(Publisher)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrNotPublisher.Error())
	}
	if err := p.Publish(ctx, nodeStatusFromPB(req.GetStatus())); err != nil {
		return nil, err
	}
	return &pluginpb.PublishResponse{}, nil
}

func (s *configSourceServer) Peers(_ *pluginpb.PeersRequest, stream grpc.ServerStreamingServer[pluginpb.PeersUpdate]) error {
	p, ok := s.impl.(Publisher)
	if !ok {
		return status.Error(codes.Unimplemented, ErrNotPublisher.Error())
	}
	return p.WatchPeers(stream.Context(), func(u PeersUpdate) error {
		m := &pluginpb.PeersUpdate{Unavailable: u.Unavailable}
		for _, n := range u.Nodes {
			m.Nodes = append(m.Nodes, nodeStatusToPB(n))
		}
		return stream.Send(m)
	})
}

func nodeStatusToPB(n NodeStatus) *pluginpb.NodeStatus {
	m := &pluginpb.NodeStatus{Node: n.Node, Revision: n.Revision, SourcesDigest: n.SourcesDigest,
		Generation: n.Generation, ConfigDigest: n.ConfigDigest, RejectedRevision: n.RejectedRevision,
		Rejected: n.Rejected, Shards: n.Shards}
	if !n.Updated.IsZero() {
		m.UpdatedUnixNano = n.Updated.UnixNano()
	}
	for _, v := range n.VIPs {
		m.Vips = append(m.Vips, &pluginpb.VIPDigest{Name: v.Name, Table: v.Table, Backends: v.Backends})
	}
	return m
}

func nodeStatusFromPB(m *pluginpb.NodeStatus) NodeStatus {
	n := NodeStatus{Node: m.GetNode(), Revision: m.GetRevision(), SourcesDigest: m.GetSourcesDigest(),
		Generation: m.GetGeneration(), ConfigDigest: m.GetConfigDigest(), RejectedRevision: m.GetRejectedRevision(),
		Rejected: m.GetRejected(), Shards: m.GetShards()}
	if t := m.GetUpdatedUnixNano(); t != 0 {
		n.Updated = time.Unix(0, t).UTC()
	}
	for _, v := range m.GetVips() {
		n.VIPs = append(n.VIPs, VIPDigest{Name: v.GetName(), Table: v.GetTable(), Backends: v.GetBackends()})
	}
	return n
}

// ConfigSourceClient is the host's handle on a config-source plugin.
type ConfigSourceClient struct {
	c pluginpb.ConfigSourceClient
}

// Info asks the plugin who it is.
func (c *ConfigSourceClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pluginpb.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	return infoFromPB(r), nil
}

// Configure sends the evaluated configuration (a JSON object).
func (c *ConfigSourceClient) Configure(ctx context.Context, config []byte) error {
	return configureClient(ctx, c.c.Configure, config)
}

// Watch calls send with each update the plugin streams, until ctx ends
// (nil), the plugin ends the stream (nil), send fails or the call fails.
func (c *ConfigSourceClient) Watch(ctx context.Context, send func(ConfigUpdate) error) error {
	stream, err := c.c.Watch(ctx, &pluginpb.WatchRequest{})
	if err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) || (err != nil && ctx.Err() != nil) {
			return nil
		}
		if err != nil {
			return err
		}
		u := ConfigUpdate{Revision: m.GetRevision(), Unavailable: m.GetUnavailable()}
		for _, d := range m.GetDocuments() {
			u.Documents = append(u.Documents, Document{Name: d.GetName(), Format: d.GetFormat(), Content: d.GetContent()})
		}
		if err := send(u); err != nil {
			return err
		}
	}
}

// Publish stores this node's state through the plugin; ErrNotPublisher
// when the plugin does not implement Publisher.
func (c *ConfigSourceClient) Publish(ctx context.Context, s NodeStatus) error {
	_, err := c.c.Publish(ctx, &pluginpb.PublishRequest{Status: nodeStatusToPB(s)})
	return notPublisher(err)
}

// WatchPeers calls send with each peers update the plugin streams, as
// Watch does with documents; ErrNotPublisher when the plugin does not
// implement Publisher.
func (c *ConfigSourceClient) WatchPeers(ctx context.Context, send func(PeersUpdate) error) error {
	stream, err := c.c.Peers(ctx, &pluginpb.PeersRequest{})
	if err != nil {
		return notPublisher(err)
	}
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) || (err != nil && ctx.Err() != nil) {
			return nil
		}
		if err != nil {
			return notPublisher(err)
		}
		u := PeersUpdate{Unavailable: m.GetUnavailable()}
		for _, n := range m.GetNodes() {
			u.Nodes = append(u.Nodes, nodeStatusFromPB(n))
		}
		if err := send(u); err != nil {
			return err
		}
	}
}

// notPublisher turns the UNIMPLEMENTED of a plugin without Publisher into
// ErrNotPublisher.
func notPublisher(err error) error {
	if status.Code(err) == codes.Unimplemented {
		return ErrNotPublisher
	}
	return err
}

var (
	_ plugin.GRPCPlugin = (*ConfigSourcePlugin)(nil)
	_ ConfigSource      = (*ConfigSourceClient)(nil)
	_ Publisher         = (*ConfigSourceClient)(nil)
)
