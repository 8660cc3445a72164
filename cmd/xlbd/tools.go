package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"

	xhcl "github.com/xlbproject/xlb/hcl"
)

func validateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	vars := varsFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: xlbd validate [-var name=value]... FILE...")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	if fs.Parse(args) != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	rc := 0
	for _, path := range fs.Args() {
		if load(path, vars, stderr) == nil {
			rc = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	return rc
}

func fmtCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fmt", flag.ContinueOnError)
	check := fs.Bool("check", false, "do not write; list files that are not formatted and exit 1 if any")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: xlbd fmt [-check] FILE...")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	if fs.Parse(args) != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
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
	fs := flag.NewFlagSet("graph", flag.ContinueOnError)
	vars := varsFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: xlbd graph [-var name=value]... FILE   (pipe into: dot -Tsvg)")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	if fs.Parse(args) != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
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
