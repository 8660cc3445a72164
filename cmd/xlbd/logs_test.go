package main

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/control"
	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/internal/testenv"
)

// TestHealthTransitionLog: a backend's health change is logged (at info
// or above) with the fields an operator greps for: backend=, state= and
// the generation that carries it.
func TestHealthTransitionLog(t *testing.T) {
	f, diags := xhcl.LoadFile("../../examples/offline/offline.hcl", xhcl.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ctl := control.New()
	if err := ctl.Apply(&f.Service); err != nil {
		t.Fatal(err)
	}
	var out testenv.Buffer
	sink := loggingSink{ctl, slog.New(slog.NewTextHandler(&out, nil))}
	if err := sink.SetHealth(map[string]bool{"web-1": false}); err != nil {
		t.Fatal(err)
	}
	down := ctl.Snapshot().Generation
	if err := sink.SetHealth(map[string]bool{"web-1": true}); err != nil {
		t.Fatal(err)
	}
	up := ctl.Snapshot().Generation
	for _, want := range []string{
		fmt.Sprintf(`level=WARN msg="backend unhealthy: no new flows, its flows are re-selected" backend=web-1 state=down generation=%d`, down),
		fmt.Sprintf(`level=INFO msg="backend healthy" backend=web-1 state=up generation=%d`, up),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the log\n%s\nhas no line with\n%s", out.String(), want)
		}
	}
}
