// Command xlbd is the xlb daemon: it runs a pipeline declared in HCL, and
// checks, formats and draws pipeline files.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/xlbproject/xlb/admin"
)

const usage = `usage: xlbd <command> [flags]

commands:
  run -config FILE [-var name=value]...   run a pipeline until its sources end or a signal;
      [-node NAME] [-status FILE]          SIGHUP reloads the file; config sources' changes
                                           apply as they come (docs/sources.md)
      [-admin-socket PATH] [-admin-group G] the admin API, for xlbctl and curl (docs/admin.md)
  validate [-var name=value]... FILE...   check files (and, with the plugins they use, their
                                           settings and parameters); print every problem as file:line:col
  fmt [-check] FILE...                     rewrite files in canonical format
  graph [-var name=value]... FILE          print the element graph as Graphviz DOT
  plan -config NEW [-against RUNNING]      check NEW as validate does, then show what applying it would
                                           change: per VIP, the share of new flows that move to another
                                           backend and the backends added, removed, reweighted, drained
  version                                  print the version, VCS revision, Go and plugin protocol versions
  help                                     print this help

Run 'xlbd <command> -h' for a command's flags.
`

func main() { os.Exit(xlbd(os.Args[1:], os.Stdout, os.Stderr)) }

// xlbd runs the command args name and returns the exit code: usage asked
// for is printed to stdout (0); no command or an unknown one prints it to
// stderr (2).
func xlbd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(args []string, stdout, stderr io.Writer) int{
		"run":      runCmd,
		"validate": validateCmd,
		"fmt":      fmtCmd,
		"graph":    graphCmd,
		"plan":     planCmd,
		"version":  versionCmd,
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "xlbd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "xlbd version", stderr)
	if !parse(fs, args, func() bool { return fs.NArg() == 0 }) {
		return 2
	}
	info, _ := debug.ReadBuildInfo()
	writeVersion(stdout, info)
	return 0
}

// writeVersion prints xlbd's version as xlbctl's is printed
// (admin.WriteVersion).
func writeVersion(w io.Writer, info *debug.BuildInfo) { admin.WriteVersion(w, "xlbd", info) }
