// Package sdk is what an xlb plugin imports: the go-plugin handshake, the
// plugin map, a small Go interface per plugin kind, the gRPC adapters
// between those interfaces and plugins/proto, and one-call Serve helpers.
// It follows the layout of HashiCorp's go-plugin users (Nomad, Packer): a
// plugin's main is one call,
//
//	func main() { sdk.ServeHealthChecker(&myChecker{}) }
//
// and the host (plugins/host) dispenses a client that implements the same
// interface. Plugins log to stderr (hclog JSON, as go-plugin sets up), and
// the host forwards those lines into xlbd's log under the plugin's name.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/go-plugin"
	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
)

// ProtocolVersion is the plugin protocol version; it changes only when the
// services in plugins/proto change incompatibly.
const ProtocolVersion = 1

// Handshake is the go-plugin handshake every xlb plugin and the host share.
// The magic cookie is not a secret: it makes a plugin binary refuse to run
// when started by hand, with a message saying what it is.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "XLB_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "8f1c5e3a0b6d4f27a9e2c7d1b4f05a63",
}

// Kind is what a plugin does for xlb; it is also the plugin's name in
// PluginMap (what the host dispenses).
type Kind string

const (
	KindHealthChecker  Kind = "healthchecker"
	KindConfigSource   Kind = "configsource"
	KindRouteAnnouncer Kind = "routeannouncer"
)

// PluginMap is the host's go-plugin plugin map: dispensing a kind returns
// *HealthCheckerClient, *ConfigSourceClient or *RouteAnnouncerClient.
var PluginMap = map[string]plugin.Plugin{
	string(KindHealthChecker):  &HealthCheckerPlugin{},
	string(KindConfigSource):   &ConfigSourcePlugin{},
	string(KindRouteAnnouncer): &RouteAnnouncerPlugin{},
}

// Info is what a plugin reports about itself.
type Info struct {
	Kind             Kind
	ProtocolVersions []uint32
	Version          string
	// Schema lists the attributes of the plugin's HCL block; empty means
	// the block takes none.
	Schema []Attribute
	// Params lists the parameters the plugin takes per use (see
	// ParamsParser): a health checker's health_check blocks, a route
	// announcer's per-VIP announce blocks.
	Params []Attribute
}

// Attribute is one attribute of a plugin's HCL block. Type is an HCL type
// constraint: "string", "number", "bool", "list(string)", "map(string)",
// "any".
type Attribute struct {
	Name        string
	Type        string
	Required    bool
	Description string
}

// Describer is implemented by a plugin that reports its version and config
// schema. Kind and ProtocolVersions are filled in by the SDK.
type Describer interface {
	Describe() Info
}

// Configurer is implemented by a plugin that takes configuration. config
// is a JSON object of constants keyed by attribute name (the host has
// evaluated the HCL against the schema); DecodeConfig reads it into a
// struct. Configure is called before any other RPC, and again on reload.
// Return *ConfigError values (several with errors.Join) so that the host
// reports each at its attribute's line.
type Configurer interface {
	Configure(config []byte) error
}

// ConfigError is a problem with one attribute of a plugin's configuration
// (or the whole block when Attribute is empty).
type ConfigError struct {
	Attribute string
	Message   string
}

func (e *ConfigError) Error() string {
	if e.Attribute == "" {
		return e.Message
	}
	return e.Attribute + ": " + e.Message
}

// ConfigErrors collects the refusals of one Configure (or ParseParams),
// each at its attribute, so that one call reports them all.
type ConfigErrors []error

// Add refuses attr ("" for the whole block) with a formatted message.
func (e *ConfigErrors) Add(attr, format string, a ...any) {
	*e = append(*e, &ConfigError{Attribute: attr, Message: fmt.Sprintf(format, a...)})
}

// Err joins the refusals with errors.Join; nil when there is none.
func (e ConfigErrors) Err() error { return errors.Join(e...) }

// DecodeConfig decodes the JSON a Configurer receives into v, refusing
// attributes v does not have.
func DecodeConfig(config []byte, v any) error {
	if len(config) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(config))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return &ConfigError{Message: "decoding the configuration: " + err.Error()}
	}
	return nil
}

// info answers the Info RPC for impl, which may implement Describer.
func info(kind Kind, impl any) *pluginpb.InfoResponse {
	var in Info
	if d, ok := impl.(Describer); ok {
		in = d.Describe()
	}
	r := &pluginpb.InfoResponse{
		Kind:             kindToPB[kind],
		ProtocolVersions: []uint32{ProtocolVersion},
		Version:          in.Version,
		ConfigSchema:     schemaToPB(in.Schema),
		ParamsSchema:     schemaToPB(in.Params),
	}
	return r
}

func schemaToPB(attrs []Attribute) *pluginpb.Schema {
	s := &pluginpb.Schema{}
	for _, a := range attrs {
		s.Attributes = append(s.Attributes, &pluginpb.Attribute{
			Name: a.Name, Type: a.Type, Required: a.Required, Description: a.Description,
		})
	}
	return s
}

func schemaFromPB(s *pluginpb.Schema) []Attribute {
	var out []Attribute
	for _, a := range s.GetAttributes() {
		out = append(out, Attribute{Name: a.GetName(), Type: a.GetType(), Required: a.GetRequired(), Description: a.GetDescription()})
	}
	return out
}

var kindToPB = map[Kind]pluginpb.Kind{
	KindHealthChecker:  pluginpb.Kind_KIND_HEALTH_CHECKER,
	KindConfigSource:   pluginpb.Kind_KIND_CONFIG_SOURCE,
	KindRouteAnnouncer: pluginpb.Kind_KIND_ROUTE_ANNOUNCER,
}

func infoFromPB(r *pluginpb.InfoResponse) Info {
	in := Info{ProtocolVersions: r.GetProtocolVersions(), Version: r.GetVersion()}
	for k, v := range kindToPB {
		if v == r.GetKind() {
			in.Kind = k
		}
	}
	in.Schema = schemaFromPB(r.GetConfigSchema())
	in.Params = schemaFromPB(r.GetParamsSchema())
	return in
}

// configure answers the Configure RPC for impl, which may implement
// Configurer; a plugin without configuration refuses a non-empty one.
func configure(impl any, req *pluginpb.ConfigureRequest) *pluginpb.ConfigureResponse {
	cfg := req.GetConfigJson()
	c, ok := impl.(Configurer)
	if !ok {
		if len(cfg) == 0 || string(cfg) == "{}" || string(cfg) == "null" {
			return &pluginpb.ConfigureResponse{}
		}
		return &pluginpb.ConfigureResponse{Errors: []*pluginpb.ConfigError{{Message: "this plugin takes no configuration"}}}
	}
	return &pluginpb.ConfigureResponse{Errors: configErrorsToPB(c.Configure(cfg))}
}

// Unjoin lists the errors err joins with errors.Join (also when the join
// is wrapped with fmt.Errorf's %w), or err alone; nil for nil. A refusal
// of several attributes is such a join of *ConfigError values: look at
// each with errors.As.
func Unjoin(err error) []error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
	}
	return []error{err}
}

// configErrorsToPB flattens err (errors.Join of *ConfigError, or any
// error) into wire form; nil is none.
func configErrorsToPB(err error) []*pluginpb.ConfigError {
	var out []*pluginpb.ConfigError
	for _, e := range Unjoin(err) {
		var ce *ConfigError
		if errors.As(e, &ce) {
			out = append(out, &pluginpb.ConfigError{Attribute: ce.Attribute, Message: ce.Message})
		} else {
			out = append(out, &pluginpb.ConfigError{Message: e.Error()})
		}
	}
	return out
}

// configErrorsFromPB is configErrorsToPB's inverse: *ConfigError values
// joined with errors.Join.
func configErrorsFromPB(pe []*pluginpb.ConfigError) error {
	var errs []error
	for _, e := range pe {
		errs = append(errs, &ConfigError{Attribute: e.GetAttribute(), Message: e.GetMessage()})
	}
	return errors.Join(errs...)
}

// configureClient sends config and turns refused attributes back into
// *ConfigError values joined with errors.Join.
func configureClient(ctx context.Context, call func(context.Context, *pluginpb.ConfigureRequest, ...grpc.CallOption) (*pluginpb.ConfigureResponse, error), config []byte) error {
	resp, err := call(ctx, &pluginpb.ConfigureRequest{ConfigJson: config})
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	return configErrorsFromPB(resp.GetErrors())
}

// serve runs p as the only plugin of this process until the host stops it.
func serve(kind Kind, p plugin.Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{string(kind): p},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}
