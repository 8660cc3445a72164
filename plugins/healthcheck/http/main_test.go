package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/healthcheck/httpcheck"
	"github.com/xlbproject/xlb/plugins/healthcheck/internal/plugintest"
	"github.com/xlbproject/xlb/plugins/sdk"
)

// TestPlugin builds this binary and checks a batch through go-plugin, as
// xlbd does.
func TestPlugin(t *testing.T) {
	hc := plugintest.Start(t, ".")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	in, err := hc.Info(ctx)
	if err != nil || in.Kind != sdk.KindHealthChecker || in.Version != httpcheck.Version || len(in.Schema) == 0 || len(in.Params) == 0 {
		t.Fatalf("Info = %+v, %v", in, err)
	}
	if err := hc.Configure(ctx, []byte(`{"concurrency": 8}`)); err != nil {
		t.Fatal(err)
	}
	var ce *sdk.ConfigError
	if err := hc.ValidateParams(ctx, []byte(`{"expect_status": "2xx"}`)); !errors.As(err, &ce) || ce.Attribute != "expect_status" {
		t.Errorf("ValidateParams with a bad expect_status: %v", err)
	}
	params := []byte(`{"path": "/healthz", "expect_status": [200], "body_match": "^ok$", "host": "web.example"}`)
	if err := hc.ValidateParams(ctx, params); err != nil {
		t.Fatal(err)
	}

	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || r.Host != "web.example" {
			http.Error(w, "wrong request", http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer healthy.Close()
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer sick.Close()

	port := func(s *httptest.Server) uint16 {
		_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
		n, _ := strconv.Atoi(p)
		return uint16(n)
	}
	targets := []sdk.Target{
		{ID: 1, Name: "a", Address: "127.0.0.1", Port: port(healthy)},
		{ID: 2, Name: "b", Address: "127.0.0.1", Port: port(sick)},
	}
	rs, err := hc.CheckBatch(ctx, params, targets, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].ID != 1 || rs[0].Status != sdk.StatusPass {
		t.Errorf("healthy: %+v", rs[0])
	}
	if rs[1].ID != 2 || rs[1].Status != sdk.StatusFail || rs[1].Message != "status 503" {
		t.Errorf("sick: %+v", rs[1])
	}
	// Another pool's block, in the same plugin: its own parameters.
	rs, err = hc.CheckBatch(ctx, []byte(`{"expect_status": "503"}`), targets, time.Second)
	if err != nil || rs[0].Status != sdk.StatusFail || rs[1].Status != sdk.StatusPass {
		t.Errorf("with expect_status 503: %+v, %v", rs, err)
	}
}
