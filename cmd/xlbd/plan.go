package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control"
	xhcl "github.com/xlbproject/xlb/hcl"
)

// Exit codes of xlbd plan with -detailed-exitcode, as terraform plan's.
const (
	planNoChanges = 0
	planInvalid   = 1
	planChanges   = 2
)

func planCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("plan", "xlbd plan -config NEW [-against RUNNING] [-var name=value]... [-o text|json] [-detailed-exitcode]", stderr)
	config := fs.String("config", "", "the new file (required), checked as xlbd validate checks it")
	against := fs.String("against", "", "the file the daemon runs now (default: an empty configuration, so everything is added)")
	vars := varsFlag(fs)
	plugins := fs.Bool("plugins", true, "also start the health-check plugins the new file uses and have them check its settings and parameters")
	pluginDir := pluginDirFlag(fs)
	format := fs.String("o", "text", "output format: text or json")
	detailed := fs.Bool("detailed-exitcode", false, "exit 2 when the plan has changes, 0 when it has none (1 stays an invalid file)")
	if !parse(fs, args, func() bool {
		return *config != "" && fs.NArg() == 0 && (*format == "text" || *format == "json")
	}) {
		return 2
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	out := admin.PlanResult{Config: *config, Against: *against, Health: admin.HealthNote}
	running := &control.Config{}
	var runningFile *xhcl.File
	if *against != "" {
		// The running file passed its checks when the daemon loaded it,
		// plugins included; its service config is all a plan needs.
		s, err := newServices(*pluginDir, false, quiet)
		if err != nil {
			fmt.Fprintf(stderr, "xlbd plan: %v\n", err)
			return planInvalid
		}
		if runningFile, err = s.transact(*against, vars, stderr, false); err != nil {
			fmt.Fprintf(stderr, "xlbd plan: the running file %s (-against): %v; nothing planned\n", *against, err)
			return planInvalid
		}
		running = &runningFile.Service
	}
	s, err := newServices(*pluginDir, *plugins, quiet)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd plan: %v\n", err)
		return planInvalid
	}
	defer s.stop()
	// As for a reload: a changed pipeline block is a warning.
	s.running = runningFile
	f, err := s.transact(*config, vars, stderr, false)
	if err != nil {
		fmt.Fprintf(stderr, "xlbd plan: %s: %v; nothing planned\n", *config, err)
		return planInvalid
	}
	if runningFile == nil {
		// An empty config has no seed of its own: not a seed change.
		running.HashSeed = f.Service.HashSeed
	} else {
		out.PipelineChanged = xhcl.PipelineChanges(runningFile, f) != nil
	}
	if out.Plan, err = control.NewPlan(running, &f.Service); err != nil {
		fmt.Fprintf(stderr, "xlbd plan: %v\n", err)
		return planInvalid
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "xlbd plan: %v\n", err)
			return planInvalid
		}
	} else {
		admin.WritePlan(stdout, &out)
	}
	if *detailed && (out.Total.Changed || out.PipelineChanged) {
		return planChanges
	}
	return planNoChanges
}
