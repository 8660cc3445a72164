// Command gen writes docs/hcl.md (see package hcldoc): make docs runs it.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/xlbproject/xlb/internal/hcldoc"
)

func main() {
	out := flag.String("o", "docs/hcl.md", "the file to write")
	flag.Parse()
	b, err := hcldoc.Generate()
	if err == nil {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hcldoc:", err)
		os.Exit(1)
	}
}
