// Command tcp is xlb's built-in TCP connect health-check plugin (see
// plugins/healthcheck/tcpcheck). xlbd starts it; run by hand it refuses.
package main

import (
	"github.com/xlbproject/xlb/plugins/healthcheck/tcpcheck"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func main() { sdk.ServeHealthChecker(tcpcheck.New()) }
