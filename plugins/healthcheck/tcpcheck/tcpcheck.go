// Package tcpcheck is xlb's TCP connect health check, the layer-4 check of
// keepalived's TCP_CHECK and HAProxy's plain "check": a backend passes when
// a TCP handshake to it completes within the check timeout. On Linux a
// batch of targets is probed by non-blocking sockets driven from one epoll
// loop, at most Concurrency in flight (connect_linux.go); elsewhere, and
// for host names, by a bounded pool of workers over net.Dialer (dial.go).
// The plugin binary is plugins/healthcheck/tcp; Checker is usable
// in-process too.
package tcpcheck

import (
	"context"
	"errors"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// Version is this checker's own version, reported in Info.
const Version = "0.1.0"

// Checker is the tcp health checker; its plugin block sets concurrency.
// The check takes no parameters: the port comes with each target, from the
// health check's port. The zero value is ready; Check and Configure may be
// called concurrently.
type Checker struct {
	probe.Concurrency
}

// New returns a Checker with the default concurrency.
func New() *Checker { return &Checker{} }

// Describe reports the version and the config schema.
func (c *Checker) Describe() sdk.Info {
	return sdk.Info{Version: Version, Schema: []sdk.Attribute{
		probe.ConcurrencyAttribute,
	}}
}

// Check connects to every target; ctx's deadline is the connect timeout.
func (c *Checker) Check(ctx context.Context, targets []sdk.Target) []sdk.Result {
	return connectAll(ctx, targets, c.Load(), func(t sdk.Target) (int, error) {
		if t.Port == 0 {
			return 0, errors.New("no port: set port in the health check")
		}
		return int(t.Port), nil
	})
}

var (
	_ sdk.HealthChecker = (*Checker)(nil)
	_ sdk.Describer     = (*Checker)(nil)
	_ sdk.Configurer    = (*Checker)(nil)
)
