// Command http is xlb's built-in HTTP(S) health-check plugin (see
// plugins/healthcheck/httpcheck). xlbd starts it; run by hand it refuses.
package main

import (
	"github.com/xlbproject/xlb/plugins/healthcheck/httpcheck"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func main() { sdk.ServeHealthChecker(httpcheck.New()) }
