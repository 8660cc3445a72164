package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"

	_ "github.com/xlbproject/xlb/elements/all"
	xhcl "github.com/xlbproject/xlb/hcl"
)

// varFlags collects repeated -var name=value flags.
type varFlags map[string]string

func (v varFlags) String() string { return "" }

func (v varFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("want -var name=value, got %q", s)
	}
	v[name] = value
	return nil
}

// varsFlag registers -var on fs.
func varsFlag(fs *flag.FlagSet) varFlags {
	v := varFlags{}
	fs.Var(v, "var", "set a variable: -var name=value (repeatable; XLB_VAR_name in the environment works too)")
	return v
}

// envVars returns the XLB_VAR_<name> environment variables, which -var
// overrides, as Terraform's TF_VAR_ are.
func envVars() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		if rest, ok := strings.CutPrefix(kv, "XLB_VAR_"); ok {
			if name, value, ok := strings.Cut(rest, "="); ok {
				out[name] = value
			}
		}
	}
	return out
}

// load reads and checks a pipeline file, printing every diagnostic to w.
// It returns nil when the file has errors.
func load(path string, vars varFlags, w io.Writer) *xhcl.File {
	f, diags := xhcl.LoadFile(path, xhcl.Options{Vars: vars, EnvVars: envVars()})
	printDiags(w, f, diags)
	if diags.HasErrors() {
		return nil
	}
	return f
}

func printDiags(w io.Writer, f *xhcl.File, diags hcl2.Diagnostics) {
	var files map[string]*hcl2.File
	if f != nil {
		files = f.Files()
	}
	_ = xhcl.WriteDiagnostics(w, files, diags)
}
