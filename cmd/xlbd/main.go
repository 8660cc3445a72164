// Command xlbd is the xlb daemon: it runs a pipeline declared in HCL, and
// checks, formats and draws pipeline files.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: xlbd <command> [flags]

commands:
  run -config FILE [-var name=value]...   run a pipeline until its sources end or a signal
  validate [-var name=value]... FILE...   check files; print every problem as file:line:col
  fmt [-check] FILE...                     rewrite files in canonical format
  graph [-var name=value]... FILE          print the element graph as Graphviz DOT

Run 'xlbd <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmds := map[string]func(args []string, stdout, stderr io.Writer) int{
		"run":      runCmd,
		"validate": validateCmd,
		"fmt":      fmtCmd,
		"graph":    graphCmd,
	}
	cmd, ok := cmds[os.Args[1]]
	if !ok {
		if os.Args[1] != "-h" && os.Args[1] != "help" && os.Args[1] != "--help" {
			fmt.Fprintf(os.Stderr, "xlbd: unknown command %q\n\n", os.Args[1])
		}
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	os.Exit(cmd(os.Args[2:], os.Stdout, os.Stderr))
}
