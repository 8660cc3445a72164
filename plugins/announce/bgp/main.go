// Command bgp is xlb's BGP route-announcer plugin: it embeds gobgp as a
// library and announces the VIP prefixes xlbd asks for to its neighbors
// (see README.md). xlbd starts it; run by hand it refuses.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func main() {
	// JSON lines on stderr: the host re-logs each under the plugin's name.
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	sdk.ServeRouteAnnouncer(newSpeaker(log))
}

var (
	_ sdk.RouteAnnouncer  = (*speaker)(nil)
	_ sdk.Describer       = (*speaker)(nil)
	_ sdk.Configurer      = (*speaker)(nil)
	_ sdk.ParamsParser    = (*speaker)(nil)
	_ sdk.Stopper         = (*speaker)(nil)
	_ sdk.SessionReporter = (*speaker)(nil)
)
