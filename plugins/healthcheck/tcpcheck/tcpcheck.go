// Package tcpcheck is xlb's TCP connect health check, the layer-4 check of
// keepalived's TCP_CHECK and HAProxy's plain "check": a backend passes when
// a TCP handshake to it completes within the check timeout. A batch of
// targets is probed concurrently by a bounded pool of workers. The plugin
// binary is plugins/healthcheck/tcp; Checker is usable in-process too.
package tcpcheck

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"sync/atomic"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Version is this checker's own version, reported in Info.
const Version = "0.1.0"

// Config is the tcp plugin's configuration (its plugin block). The check
// itself takes no parameters: the port comes with each target, from the
// health check's port.
type Config struct {
	// Concurrency is the most connects in flight at once.
	Concurrency int
}

// DefaultConfig is the configuration before Configure.
func DefaultConfig() Config { return Config{Concurrency: probe.DefaultConcurrency} }

// ParseConfig reads the JSON object a Configurer receives; each bad
// attribute is a *sdk.ConfigError, joined with errors.Join.
func ParseConfig(config []byte) (Config, error) {
	var raw struct {
		Concurrency json.RawMessage `json:"concurrency"`
	}
	c := DefaultConfig()
	if err := probe.Decode(config, &raw); err != nil {
		return c, err
	}
	return c, probe.Int("concurrency", raw.Concurrency, &c.Concurrency, 1, 100000)
}

// Checker is the tcp health checker. The zero value is not ready: use New.
// Check and Configure may be called concurrently.
type Checker struct {
	cfg atomic.Pointer[Config]
}

// New returns a Checker with DefaultConfig.
func New() *Checker {
	c := &Checker{}
	cfg := DefaultConfig()
	c.cfg.Store(&cfg)
	return c
}

// Configure replaces the configuration; on error the old one stays.
func (c *Checker) Configure(config []byte) error {
	cfg, err := ParseConfig(config)
	if err != nil {
		return err
	}
	c.cfg.Store(&cfg)
	return nil
}

// Describe reports the version and the config schema.
func (c *Checker) Describe() sdk.Info {
	return sdk.Info{Version: Version, Schema: []sdk.Attribute{
		{Name: "concurrency", Type: "number", Description: "most connects in flight at once (default 1000)"},
	}}
}

// Check connects to every target; ctx's deadline is the connect timeout.
func (c *Checker) Check(ctx context.Context, targets []sdk.Target) []sdk.Result {
	cfg := c.cfg.Load()
	return probe.Run(ctx, targets, cfg.Concurrency, func(ctx context.Context, t sdk.Target) sdk.Result {
		port := int(t.Port)
		if port == 0 {
			return sdk.Result{Status: sdk.StatusFail, Message: "no port: set port in the health check"}
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.Address, strconv.Itoa(port)))
		if err != nil {
			return probe.Fail(err)
		}
		// Close with a RST (linger 0), as HAProxy does after a check: a
		// graceful close would leave the probing side in TIME_WAIT, and at
		// 10,000 targets a second that is 600,000 sockets per minute.
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
		return sdk.Result{Status: sdk.StatusPass}
	})
}

var (
	_ sdk.HealthChecker = (*Checker)(nil)
	_ sdk.Describer     = (*Checker)(nil)
	_ sdk.Configurer    = (*Checker)(nil)
)
