package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	xhcl "github.com/xlbproject/xlb/hcl"
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "xlbd validate [-var name=value]... [-plugins=false] FILE...", stderr)
	vars := varsFlag(fs)
	plugins := fs.Bool("plugins", true, "also start the health-check plugins the file uses and have them check its settings and parameters")
	pluginDir := pluginDirFlag(fs)
	maxHeap := fs.Int64("max-heap", 0, "exit with code 3 when the heap passes this many bytes (0: no bound); xlbd run checks reloads this way")
	maxCPU := fs.Duration("max-cpu", 0, "let the kernel stop the check after this much CPU time (0: no bound)")
	if !parse(fs, args, func() bool { return fs.NArg() > 0 }) {
		return 2
	}
	if *maxHeap > 0 || *maxCPU > 0 {
		if err := bound(*maxHeap, *maxCPU); err != nil {
			fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
			return 2
		}
	}
	rc := 0
	for _, path := range fs.Args() {
		if !validateFile(path, vars, *pluginDir, *plugins, stderr) {
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return rc
}

// validateFile checks the file at path as xlbd run would before applying
// it (with plugins: starting the plugins it uses, which check their
// settings and parameters, then stopping them) and prints what it finds.
func validateFile(path string, vars varFlags, pluginDir string, plugins bool, stderr io.Writer) bool {
	s, err := newServices(pluginDir, plugins, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
		return false
	}
	defer s.stop()
	if err := s.validate(path, vars, stderr); err != nil {
		if _, ok := err.(rejected); !ok {
			fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
		}
		return false
	}
	return true
}

func fmtCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fmt", "xlbd fmt [-check] FILE...", stderr)
	check := fs.Bool("check", false, "do not write; list files that are not formatted and exit 1 if any")
	if !parse(fs, args, func() bool { return fs.NArg() > 0 }) {
		return 2
	}
	rc := 0
	for _, path := range fs.Args() {
		src, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "xlbd fmt: %v\n", err)
			rc = 1
			continue
		}
		out, diags := xhcl.Format(path, src)
		if diags.HasErrors() {
			printDiags(stderr, nil, diags)
			rc = 1
			continue
		}
		if bytes.Equal(src, out) {
			continue
		}
		fmt.Fprintln(stdout, path)
		if *check {
			rc = 1
			continue
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			fmt.Fprintf(stderr, "xlbd fmt: %v\n", err)
			rc = 1
		}
	}
	return rc
}

func graphCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("graph", "xlbd graph [-var name=value]... FILE   (pipe into: dot -Tsvg)", stderr)
	vars := varsFlag(fs)
	if !parse(fs, args, func() bool { return fs.NArg() == 1 }) {
		return 2
	}
	f := load(fs.Arg(0), vars, stderr)
	if f == nil {
		return 1
	}
	if err := f.Graph.WriteDOT(stdout); err != nil {
		fmt.Fprintf(stderr, "xlbd graph: %v\n", err)
		return 1
	}
	return 0
}

// newFlags returns the flag set of a subcommand, printing its usage line,
// flags and errors to stderr.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage:", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and reports whether they are usable: no flag error and
// argsOK true for the positional arguments left (usage printed otherwise).
func parse(fs *flag.FlagSet, args []string, argsOK func() bool) bool {
	if fs.Parse(args) != nil {
		return false
	}
	if !argsOK() {
		fs.Usage()
		return false
	}
	return true
}
