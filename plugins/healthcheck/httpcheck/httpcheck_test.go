package httpcheck

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

// server answers /status/<code> with that code and body "code <code>",
// and records the Host header of each request.
type server struct {
	mu    sync.Mutex
	hosts []string
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hosts = append(s.hosts, r.Host)
	s.mu.Unlock()
	code := 200
	if c, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
		code, _ = strconv.Atoi(c)
	}
	w.WriteHeader(code)
	w.Write([]byte("code " + strconv.Itoa(code)))
}

func target(t *testing.T, rawURL string) sdk.Target {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(u.Host)
	p, _ := strconv.Atoi(port)
	return sdk.Target{ID: 1, Address: host, Port: uint16(p)}
}

// check probes tg with a health_check block's parameters (JSON).
func check(t *testing.T, params string, tg sdk.Target) sdk.Result {
	t.Helper()
	c := New()
	st, err := c.ParseParams([]byte(params))
	if err != nil {
		t.Fatalf("%s: %v", params, err)
	}
	tg.Params = st
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Check(ctx, []sdk.Target{tg})[0]
}

func TestStatusAndBody(t *testing.T) {
	s := &server{}
	ts := httptest.NewServer(s)
	defer ts.Close()
	tg := target(t, ts.URL)
	for _, tc := range []struct {
		config string
		pass   bool
		msg    string
	}{
		{`{}`, true, "status 200"},
		{`{"path": "/status/500"}`, false, "status 500"},
		{`{"path": "/status/302"}`, true, "status 302"}, // default 200-399, redirect not followed
		{`{"path": "/status/404"}`, false, "status 404"},
		{`{"path": "/status/404", "expect_status": "200-299, 404"}`, true, ""},
		{`{"path": "/status/204", "expect_status": ["200", 204]}`, true, ""},
		{`{"path": "/status/503", "expect_status": "500-502"}`, false, "status 503"},
		{`{"path": "/status/200", "body_match": "^code 2\\d\\d$"}`, true, ""},
		{`{"path": "/status/200", "body_match": "ready"}`, false, "body does not match"},
		{`{"method": "HEAD"}`, true, ""},
	} {
		r := check(t, tc.config, tg)
		if (r.Status == sdk.StatusPass) != tc.pass || !strings.Contains(r.Message, tc.msg) || r.ID != tg.ID {
			t.Errorf("%s: got %+v, want pass=%v %q", tc.config, r, tc.pass, tc.msg)
		}
	}
}

func TestHostHeader(t *testing.T) {
	s := &server{}
	ts := httptest.NewServer(s)
	defer ts.Close()
	tg := target(t, ts.URL)
	check(t, `{}`, tg)
	check(t, `{"host": "www.example.com"}`, tg)
	s.mu.Lock()
	defer s.mu.Unlock()
	want := []string{tg.Address + ":" + strconv.Itoa(int(tg.Port)), "www.example.com"}
	if strings.Join(s.hosts, " ") != strings.Join(want, " ") {
		t.Errorf("Host headers %q, want %q", s.hosts, want)
	}
}

func TestTLS(t *testing.T) {
	ts := httptest.NewUnstartedServer(&server{})
	// The failed handshakes below are expected: keep them out of the log.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	tg := target(t, ts.URL)
	if r := check(t, `{"tls": true, "tls_verify": false}`, tg); r.Status != sdk.StatusPass {
		t.Errorf("tls without verify: %+v", r)
	}
	// httptest's certificate is self-signed, for example.com and 127.0.0.1.
	if r := check(t, `{"tls": true}`, tg); r.Status != sdk.StatusFail || !strings.Contains(r.Message, "certificate") {
		t.Errorf("tls with verify against a self-signed cert: %+v", r)
	}
	if r := check(t, `{}`, tg); r.Status != sdk.StatusFail || !strings.Contains(r.Message, "400") {
		t.Errorf("plain HTTP to a TLS server: %+v", r)
	}
}

func TestFailures(t *testing.T) {
	// A server that accepts and never answers: the deadline ends the probe.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	silent := target(t, "http://"+ln.Addr().String())
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := target(t, "http://"+ln2.Addr().String())
	ln2.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rs := New().Check(ctx, []sdk.Target{silent, refused})
	if rs[0].Status != sdk.StatusFail || !strings.Contains(rs[0].Message, "deadline") {
		t.Errorf("silent server: %+v", rs[0])
	}
	if rs[1].Status != sdk.StatusFail || !strings.Contains(rs[1].Message, "refused") {
		t.Errorf("closed port: %+v", rs[1])
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("batch took %v with a 200ms deadline", d)
	}
}

func TestBatch1000(t *testing.T) {
	ts := httptest.NewServer(&server{})
	defer ts.Close()
	tg := target(t, ts.URL)
	targets := make([]sdk.Target, 1000)
	for i := range targets {
		targets[i] = tg
		targets[i].ID = uint64(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	rs := New().Check(ctx, targets)
	t.Logf("1,000 HTTP targets checked in %v", time.Since(start))
	for i, r := range rs {
		if r.ID != uint64(i) || r.Status != sdk.StatusPass {
			t.Fatalf("target %d: %+v", i, r)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		config string
		attrs  []string
	}{
		{`{}`, nil},
		{`{"method": "GET", "path": "/healthz?full=1", "expect_status": "200", "body_match": "ok", "host": "a.example", "tls": true, "tls_verify": "false", "tls_server_name": "b.example"}`, nil},
		{`{"paht": "/"}`, []string{"paht"}},
		{`{"method": "get"}`, []string{"method"}},
		{`{"path": "healthz"}`, []string{"path"}},
		{`{"path": "http://x/"}`, []string{"path"}},
		{`{"expect_status": "200-"}`, []string{"expect_status"}},
		{`{"expect_status": "399-200"}`, []string{"expect_status"}},
		{`{"expect_status": "700"}`, []string{"expect_status"}},
		{`{"expect_status": ""}`, []string{"expect_status"}},
		{`{"expect_status": {"a": 1}}`, []string{"expect_status"}},
		{`{"body_match": "("}`, []string{"body_match"}},
		{`{"method": "HEAD", "body_match": "ok"}`, []string{"body_match"}},
		{`{"host": "a b"}`, []string{"host"}},
		{`{"tls_verify": false}`, []string{"tls"}},
		{`{"tls": "yes", "method": 1}`, []string{"method", "tls"}},
		{`{"port": 80}`, []string{"port"}},               // the health check's own attribute
		{`{"concurrency": 10}`, []string{"concurrency"}}, // the plugin block's
	} {
		_, err := ParseParams([]byte(tc.config))
		var got []string
		for _, e := range sdk.Unjoin(err) {
			var ce *sdk.ConfigError
			if !errors.As(e, &ce) {
				t.Errorf("%s: %v is not a ConfigError", tc.config, e)
				continue
			}
			got = append(got, ce.Attribute)
		}
		if strings.Join(got, ",") != strings.Join(tc.attrs, ",") {
			t.Errorf("%s: errors %v name %v, want %v", tc.config, err, got, tc.attrs)
		}
	}
	if in := New().Describe(); in.Version != Version || len(in.Schema) != 1 || len(in.Params) != 8 {
		t.Errorf("Describe = %+v", in)
	}
	c := New()
	if err := c.Configure([]byte(`{"concurrency": 0}`)); err == nil {
		t.Error("Configure accepted concurrency 0")
	}
	if err := c.Configure([]byte(`{"path": "/"}`)); err == nil {
		t.Error("Configure accepted a check parameter")
	}
	if err := c.Configure([]byte(`{"concurrency": 7}`)); err != nil || c.Load() != 7 {
		t.Errorf("Configure(concurrency 7): %v, concurrency %d", err, c.Load())
	}
}

func TestStatusSet(t *testing.T) {
	s, err := ParseStatusSet([]string{"200-299 404", "500"})
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{199: false, 200: true, 250: true, 299: true, 300: false, 404: true, 500: true, 501: false} {
		if s.Contains(code) != want {
			t.Errorf("Contains(%d) = %v", code, !want)
		}
	}
}
