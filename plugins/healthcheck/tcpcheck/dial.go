package tcpcheck

import (
	"context"
	"net"
	"strconv"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/probe"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// portFunc gives a target's port, or why it has none (the target then
// fails with that error, unprobed).
type portFunc func(sdk.Target) (int, error)

// dialAll checks targets with net.Dialer on probe.Run's pool of concurrency
// goroutines. It is the portable path (connect_other.go) and, on Linux,
// the path for a batch naming a target by host name, which net.Dialer
// resolves; it also stays the baseline BenchmarkCheck1000 measures the
// epoll loop against.
func dialAll(ctx context.Context, targets []sdk.Target, concurrency int, port portFunc) []sdk.Result {
	return probe.Run(ctx, targets, concurrency, func(ctx context.Context, t sdk.Target) sdk.Result {
		p, err := port(t)
		if err != nil {
			return probe.Fail(err)
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(t.Address, strconv.Itoa(p)))
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
