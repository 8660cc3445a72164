package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	pluginpb "github.com/xlbproject/xlb/plugins/proto"
	"google.golang.org/grpc"
)

// ParamsParser is implemented by a plugin that takes parameters per use:
// a health checker's health_check blocks (path, expected status, ...), a
// route announcer's per-VIP announce blocks (communities, MED, ...).
// ParseParams reads one block's parameters, a JSON object of constants
// (DecodeConfig helps), into the plugin's own form, which the SDK hands
// back as Target.Params or Route.Params. The SDK parses each distinct
// block once and caches the result, so ParseParams may do expensive work
// (compile a regexp, build a TLS client). Return *ConfigError values
// (several with errors.Join) so that the host reports each at its
// attribute's line. A plugin without ParamsParser refuses every parameter.
type ParamsParser interface {
	ParseParams(params []byte) (any, error)
}

// maxParsed bounds the cache of parsed parameters: a configuration has a
// block per pool and method (or per VIP), and reloads replace blocks; when
// the bound is reached the cache starts over rather than tracking use.
const maxParsed = 1024

// paramsCache parses parameters with a plugin's ParamsParser, once per
// distinct JSON.
type paramsCache struct {
	impl any    // may implement ParamsParser
	what string // the plugin as messages name it: "this health check"

	mu     sync.Mutex
	parsed map[string]any // ParseParams results by parameters' JSON
}

func newParamsCache(impl any, what string) *paramsCache {
	return &paramsCache{impl: impl, what: what, parsed: map[string]any{}}
}

// parse returns what ParseParams makes of js, through the cache; nil for
// no parameters (empty js, {} or null) when impl has no ParamsParser.
func (c *paramsCache) parse(js []byte) (any, error) {
	pp, ok := c.impl.(ParamsParser)
	if !ok {
		if len(js) == 0 || string(js) == "{}" || string(js) == "null" {
			return nil, nil
		}
		return nil, c.noParams(js)
	}
	c.mu.Lock()
	v, ok := c.parsed[string(js)]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := pp.ParseParams(js)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.parsed) >= maxParsed {
		clear(c.parsed)
	}
	c.parsed[string(js)] = v
	c.mu.Unlock()
	return v, nil
}

// noParams refuses each attribute of js, for a plugin without parameters.
func (c *paramsCache) noParams(js []byte) error {
	var m map[string]json.RawMessage
	if json.Unmarshal(js, &m) != nil || len(m) == 0 {
		return &ConfigError{Message: c.what + " takes no parameters"}
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m)) {
		errs = append(errs, &ConfigError{Attribute: name, Message: "not expected: " + c.what + " takes no parameters"})
	}
	return errors.Join(errs...)
}

// validate answers the ValidateParams RPC.
func (c *paramsCache) validate(req *pluginpb.ValidateParamsRequest) *pluginpb.ValidateParamsResponse {
	_, err := c.parse(req.GetParamsJson())
	return &pluginpb.ValidateParamsResponse{Errors: configErrorsToPB(err)}
}

// validateParamsClient sends params to a ValidateParams RPC and turns
// refused attributes back into *ConfigError values joined with
// errors.Join.
func validateParamsClient(ctx context.Context, call func(context.Context, *pluginpb.ValidateParamsRequest, ...grpc.CallOption) (*pluginpb.ValidateParamsResponse, error), params []byte) error {
	resp, err := call(ctx, &pluginpb.ValidateParamsRequest{ParamsJson: params})
	if err != nil {
		return fmt.Errorf("validate parameters: %w", err)
	}
	return configErrorsFromPB(resp.GetErrors())
}
