package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	xhcl "github.com/xlbproject/xlb/hcl"
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "xlbd validate [-var name=value]... [-plugins=false] FILE...", stderr)
	vars := varsFlag(fs)
	plugins := fs.Bool("plugins", true, "also start the health-check plugins the file uses and have them check its settings and parameters")
	pluginDir := pluginDirFlag(fs)
	maxHeap := fs.Int64("max-heap", 0, "exit with code 3 when the heap passes this many bytes (0: no bound); xlbd run checks reloads this way")
	maxCPU := fs.Duration("max-cpu", 0, "let the kernel stop the check after this much CPU time (0: no bound)")
	stdinDocs := fs.Bool(docsFlag, false, "") // no usage: hidden
	if !parse(fs, args, func() bool { return fs.NArg() > 0 }) {
		return 2
	}
	if *maxHeap > 0 || *maxCPU > 0 {
		if err := bound(*maxHeap, *maxCPU); err != nil {
			fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
			return 2
		}
	}
	var docs []sourceDoc
	if *stdinDocs {
		var err error
		if docs, err = readDocs(os.Stdin); err != nil {
			fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
			return 2
		}
	}
	rc := 0
	for _, path := range fs.Args() {
		if !validateFile(path, vars, *pluginDir, *plugins, docs, stderr) {
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return rc
}

// validateFile checks the file at path as xlbd run would before applying
// it (with plugins: starting the plugins it uses, which check their
// settings and parameters, and its config sources, whose first documents
// it is checked with, then stopping them) and prints what it finds. docs,
// when not nil, are the sources' documents, read by xlbd run.
func validateFile(path string, vars varFlags, pluginDir string, plugins bool, docs []sourceDoc, stderr io.Writer) bool {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := newServices(pluginDir, plugins && docs == nil, log)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd validate: %v\n", err)
		return false
	}
	defer s.stop()
	s.docs = docs
	switch {
	case docs != nil:
	case plugins:
		ctx, cancel := context.WithTimeout(context.Background(), validateSourcesWait)
		err = s.startSources(ctx, path, vars, stderr)
		cancel()
	default:
		err = notReadSources(path, vars, stderr)
	}
	if err == nil {
		err = s.validate(path, vars, stderr)
	}
	if err != nil {
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
	if err := f.Graph.WriteDOT(stdout, nil); err != nil {
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
		shown := flag.NewFlagSet(name, flag.ContinueOnError)
		shown.SetOutput(stderr)
		// A flag without usage is one xlbd passes to itself: not shown.
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage != "" {
				shown.Var(f.Value, f.Name, f.Usage)
			}
		})
		shown.PrintDefaults()
	}
	return fs
}

// docsFlag makes validate read the config sources' documents as JSON on
// stdin: how xlbd run has a bounded child evaluate them (precheck).
const docsFlag = "docs-stdin"

// validateSourcesWait bounds how long validate waits for the config
// sources' first documents.
const validateSourcesWait = 30 * time.Second

// notReadSources says, for validate -plugins=false, that the config
// sources the file at path declares were not read: the VIPs and pools
// they hold are missing from the check.
func notReadSources(path string, vars varFlags, w io.Writer) error {
	f, diags := xhcl.LoadFile(path, xhcl.Options{Vars: vars, EnvVars: envVars(), SourcesOnly: true})
	if diags.HasErrors() || len(f.Sources) == 0 {
		return nil // the whole check reports them
	}
	fmt.Fprintf(w, "%s: note: config sources %s not read (-plugins=false): the VIPs and pools they hold are not checked\n",
		path, strings.Join(sourceNames(f.Sources), ", "))
	return nil
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
