package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/healthcheck/internal/plugintest"
	"github.com/xlbproject/xlb/plugins/healthcheck/tcpcheck"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// TestPlugin builds this binary and checks a batch through go-plugin, as
// xlbd does.
func TestPlugin(t *testing.T) {
	hc := plugintest.Start(t, ".")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := hc.Info(ctx)
	if err != nil || in.Kind != sdk.KindHealthChecker || in.Version != tcpcheck.Version || len(in.Schema) == 0 {
		t.Fatalf("Info = %+v, %v", in, err)
	}
	var ce *sdk.ConfigError
	if err := hc.Configure(ctx, []byte(`{"concurency": 5}`)); !errors.As(err, &ce) || ce.Attribute != "concurency" {
		t.Errorf("Configure with a misspelt attribute: %v", err)
	}
	if err := hc.ValidateParams(ctx, []byte(`{"path": "/"}`)); err == nil || !strings.Contains(err.Error(), "takes no parameters") {
		t.Errorf("ValidateParams with a parameter: %v", err)
	}
	if err := hc.ValidateParams(ctx, []byte(`{}`)); err != nil {
		t.Errorf("ValidateParams with none: %v", err)
	}
	if err := hc.Configure(ctx, []byte(`{"concurrency": 50}`)); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint16(ln2.Addr().(*net.TCPAddr).Port)
	ln2.Close()

	up := uint16(ln.Addr().(*net.TCPAddr).Port)
	targets := make([]sdk.Target, 200)
	for i := range targets {
		targets[i] = sdk.Target{ID: uint64(1000 + i), Address: "127.0.0.1", Port: up}
	}
	targets[7].Port = closed
	start := time.Now()
	rs, err := hc.CheckBatch(ctx, nil, targets, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("200 targets through the plugin in %v", time.Since(start))
	for i, r := range rs {
		want := sdk.StatusPass
		if i == 7 {
			want = sdk.StatusFail
		}
		if r.ID != targets[i].ID || r.Status != want {
			t.Errorf("target %d: %+v, want %v", i, r, want)
		}
	}
	if !strings.Contains(rs[7].Message, "refused") {
		t.Errorf("closed port: %q", rs[7].Message)
	}
}
