package admin

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// WriteVersion prints, for program (xlbd, xlbctl), what an operator or a
// bug report needs: the module version, the VCS revision the binary was
// built from (and whether the tree had uncommitted changes), the Go
// version and the plugin protocol versions xlbd speaks. info may be nil (a binary built without module
// support).
func WriteVersion(w io.Writer, program string, info *debug.BuildInfo) {
	version, revision, modified, at := "unknown", "unknown", false, ""
	if info != nil {
		version = info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				at = " (" + s.Value + ")"
			}
		}
	}
	if modified {
		revision += " (modified)"
	}
	fmt.Fprintf(w, "%s %s\nrevision %s%s\ngo %s %s/%s\nplugin protocol versions: %d\n",
		program, version, revision, at, runtime.Version(), runtime.GOOS, runtime.GOARCH, sdk.ProtocolVersion)
}
