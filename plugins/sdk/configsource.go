package sdk

import (
	"context"
	"errors"
	"io"

	"github.com/hashicorp/go-plugin"
	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
)

// ConfigSource supplies configuration documents (a watched file, an etcd
// prefix). Watch calls send with the complete current set at once and
// again after every change, until ctx ends or send fails; updates are
// level-triggered, so a document missing from one has been deleted.
type ConfigSource interface {
	Watch(ctx context.Context, send func(ConfigUpdate) error) error
}

// ConfigUpdate is the complete current set of documents.
type ConfigUpdate struct {
	Revision  string // opaque (file mtime, etcd revision), for logs
	Documents []Document
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
		m := &pluginpb.ConfigUpdate{Revision: u.Revision}
		for _, d := range u.Documents {
			m.Documents = append(m.Documents, &pluginpb.Document{Name: d.Name, Format: d.Format, Content: d.Content})
		}
		return stream.Send(m)
	})
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
		u := ConfigUpdate{Revision: m.GetRevision()}
		for _, d := range m.GetDocuments() {
			u.Documents = append(u.Documents, Document{Name: d.GetName(), Format: d.GetFormat(), Content: d.GetContent()})
		}
		if err := send(u); err != nil {
			return err
		}
	}
}

var (
	_ plugin.GRPCPlugin = (*ConfigSourcePlugin)(nil)
	_ ConfigSource      = (*ConfigSourceClient)(nil)
)
