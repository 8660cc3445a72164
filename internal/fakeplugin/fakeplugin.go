// Package fakeplugin is a health-checker plugin, a route announcer and a
// config source, for tests of the host side: a test binary re-executes
// itself as the plugin (with Env set), so a test needs no build. Run under
// the name AnnouncerName (a link to the test binary: Announcer) it is the
// route announcer, under SourceName (Source) the config source. The health checker's behaviour is scripted by target names,
// parameters and settings, and it reports the settings it runs with, so
// that a test can tell what the process itself holds.
package fakeplugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// Env set (to anything) in a test binary's environment makes ServeIfChild
// serve the plugin.
const Env = "XLB_FAKE_PLUGIN"

// Version is what the plugin reports in Info.
const Version = "9.9.9"

// ServeIfChild serves the plugin and exits when Env is set, or the binary
// runs as AnnouncerName (whose parent, an xlbd child of a test, need not
// have Env); call it first in TestMain.
func ServeIfChild() {
	asAnnouncer := filepath.Base(os.Args[0]) == AnnouncerName
	asSource := filepath.Base(os.Args[0]) == SourceName
	if os.Getenv(Env) == "" && !asAnnouncer && !asSource {
		return
	}
	l := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Name: "fake"})
	l.Info("fake plugin serving")
	switch {
	case asAnnouncer:
		sdk.ServeRouteAnnouncer(&announcer{})
	case asSource:
		sdk.ServeConfigSource(&source{})
	default:
		sdk.ServeHealthChecker(&checker{log: l})
	}
	os.Exit(0)
}

// checker passes every target except those named "down" or its parameter
// "down" (fail) and "unknown" (no verdict); a target named "config" passes
// with the settings the plugin runs with as its message. It refuses the
// parameter down = "a" and the setting refuse = true.
type checker struct {
	log    hclog.Logger
	mu     sync.Mutex
	config string
}

type params struct {
	Down string `json:"down"`
}

func (f *checker) ParseParams(js []byte) (any, error) {
	var p params
	if err := sdk.DecodeConfig(js, &p); err != nil {
		return nil, err
	}
	if p.Down == "a" {
		return nil, &sdk.ConfigError{Attribute: "down", Message: `"a" must stay up`}
	}
	return &p, nil
}

func (f *checker) Check(_ context.Context, ts []sdk.Target) []sdk.Result {
	rs := make([]sdk.Result, len(ts))
	for i, t := range ts {
		switch {
		case t.Params != nil && t.Name == t.Params.(*params).Down:
			rs[i] = sdk.Result{Status: sdk.StatusFail, Message: "down by parameter"}
		case t.Name == "down":
			rs[i] = sdk.Result{Status: sdk.StatusFail, Message: "refused"}
		case t.Name == "unknown":
			rs[i] = sdk.Result{Status: sdk.StatusUnknown, Message: "cannot tell"}
		case t.Name == "config":
			f.mu.Lock()
			rs[i] = sdk.Result{Status: sdk.StatusPass, Message: f.config}
			f.mu.Unlock()
		default:
			rs[i] = sdk.Result{Status: sdk.StatusPass}
		}
	}
	return rs
}

func (f *checker) Describe() sdk.Info {
	return sdk.Info{Version: Version,
		Schema: []sdk.Attribute{{Name: "answer", Type: "number"}, {Name: "v", Type: "number"},
			{Name: "label", Type: "string"}, {Name: "refuse", Type: "bool"}},
		Params: []sdk.Attribute{{Name: "down", Type: "string", Description: "the backend to fail"}},
	}
}

func (f *checker) Configure(config []byte) error {
	if strings.Contains(string(config), `"refuse":true`) {
		return &sdk.ConfigError{Attribute: "refuse", Message: "refused by the plugin"}
	}
	f.mu.Lock()
	f.config = string(config)
	f.mu.Unlock()
	// Through the real stderr (go-plugin parses the hclog JSON) and through
	// os.Stderr, which go-plugin streams over gRPC once serving.
	f.log.Info("configured", "config", string(config))
	fmt.Fprintln(os.Stderr, "plain stderr line")
	return nil
}

var (
	_ sdk.HealthChecker = (*checker)(nil)
	_ sdk.ParamsParser  = (*checker)(nil)
	_ sdk.Describer     = (*checker)(nil)
	_ sdk.Configurer    = (*checker)(nil)
)
