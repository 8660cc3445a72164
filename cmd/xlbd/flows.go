package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/control"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/pipeline"
)

// Workers are the graph's running instances, whose elements answer
// /v1/conntrack and /v1/lookup themselves.
func (a *adminSource) Workers() []*pipeline.Instance { return a.rt.Workers() }

// Plan plans text in the apply loop, where the configuration it is made
// against cannot change meanwhile.
func (a *adminSource) Plan(ctx context.Context, name string, text []byte) (admin.PlanResult, error) {
	var res admin.PlanResult
	var perr error
	// request returns nil only after do ran and replied: res and perr
	// are then written.
	if _, err := a.d.request(ctx, adminRequest{do: func() adminReply {
		res, perr = a.d.plan(name, text)
		return adminReply{}
	}}); err != nil {
		return admin.PlanResult{}, err
	}
	return res, perr
}

// plan checks text as a change of the main file would be checked (with
// the config sources' current documents, in the bounded child first), and
// plans it, with the operator's overrides, against the applied
// configuration. Nothing is committed. The text is written to a private
// directory under its own base name (an include's relative path resolves
// there); diagnostics name it as the caller did.
func (d *daemon) plan(name string, text []byte) (admin.PlanResult, error) {
	dir, err := os.MkdirTemp("", "xlbd-plan-")
	if err != nil {
		return admin.PlanResult{}, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return admin.PlanResult{}, err
	}
	var diags bytes.Buffer
	f, err := d.s.transactDocs(path, d.vars, d.s.sourceDocs(), &diags, false)
	out := admin.PlanResult{Config: name, Health: admin.HealthNote,
		Diagnostics: strings.ReplaceAll(diags.String(), path, name)}
	if err != nil {
		return out, &admin.InputError{Msg: fmt.Sprintf("%s: %v; nothing planned, nothing changed", name, err)}
	}
	d.mu.Lock()
	running := d.service
	d.mu.Unlock()
	out.Against = fmt.Sprintf("%s as running (generation %d)", d.path, d.s.ctl.Snapshot().Generation)
	next := f.Service
	d.s.withOverrides(&next)
	if d.s.running != nil {
		out.PipelineChanged = xhcl.PipelineChanges(d.s.running, f) != nil
	}
	if running == nil {
		running = &control.Config{HashSeed: next.HashSeed}
	}
	if out.Plan, err = control.NewPlan(running, &next); err != nil {
		return out, err
	}
	return out, nil
}
