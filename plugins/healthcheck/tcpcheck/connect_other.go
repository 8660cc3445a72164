//go:build !linux

package tcpcheck

import (
	"context"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// connectAll checks targets with net.Dialer: the raw epoll loop is
// Linux-only.
func connectAll(ctx context.Context, targets []sdk.Target, concurrency int, port portFunc) []sdk.Result {
	return dialAll(ctx, targets, concurrency, port)
}
