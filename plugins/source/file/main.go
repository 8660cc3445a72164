// Command file is xlb's file config source: it watches files and
// directories of .hcl and .hcl.json fragments with inotify and sends the
// whole set to xlbd at start and after every change, debounced (see
// README.md). xlbd starts it in the main configuration file's directory;
// run by hand it refuses.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/xlbproject/xlb/plugins/sdk"
)

func main() {
	// JSON lines on stderr: the host re-logs each under the plugin's name.
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	sdk.ServeConfigSource(newSource(log))
}
