package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/plugins/sdk"
)

func TestCommand(t *testing.T) {
	// *1 (one element), $4 (four bytes) PING.
	if got := string(command(nil, "PING")); got != "*1\r\n$4\r\nPING\r\n" {
		t.Errorf("PING = %q", got)
	}
	// *2, $4 AUTH, $6 s3cret.
	if got := string(command(nil, "AUTH", "s3cret")); got != "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n" {
		t.Errorf("AUTH = %q", got)
	}
}

func TestConfigureAndParams(t *testing.T) {
	for _, tc := range []struct {
		in     string
		params bool     // a health_check block's parameters, else the plugin block
		attrs  []string // attributes refused; nil: accepted
	}{
		{in: ``},
		{in: `{}`},
		{in: `{"concurrency":16}`},
		{in: `{"concurrency":"16"}`},
		{in: `{"concurrency":0}`, attrs: []string{"concurrency"}},
		{in: `{"password":"p"}`, attrs: []string{""}}, // a check's parameter: unknown here
		{in: `{}`, params: true},
		{in: `{"username":"u","password":"p"}`, params: true},
		{in: `{"username":"u"}`, params: true, attrs: []string{"username"}},
		{in: `{"db":1}`, params: true, attrs: []string{""}}, // unknown: the whole block
	} {
		c := newChecker()
		var err error
		if tc.params {
			_, err = c.ParseParams([]byte(tc.in))
		} else {
			err = c.Configure([]byte(tc.in))
		}
		var got []string
		for _, e := range sdk.Unjoin(err) {
			var ce *sdk.ConfigError
			if !errors.As(e, &ce) {
				t.Errorf("%s: %v is not a *sdk.ConfigError", tc.in, e)
				continue
			}
			got = append(got, ce.Attribute)
		}
		if strings.Join(got, ",") != strings.Join(tc.attrs, ",") {
			t.Errorf("%s: refused %q; want %q (%v)", tc.in, got, tc.attrs, err)
		}
	}
	c := newChecker()
	c.Configure([]byte(`{"concurrency":16}`))
	c.Configure([]byte(`{"concurrency":0}`))
	if n := c.concurrency.Load(); n != 16 {
		t.Errorf("concurrency %d after a refused change; want 16 kept", n)
	}
}

// serveOnce starts a loopback server that runs reply on every connection.
func serveOnce(t *testing.T, reply func(r *bufio.Reader, c net.Conn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				reply(bufio.NewReader(c), c)
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// answer reads the request's lines (a PING is 3, AUTH+PING 8) and writes
// out.
func answer(lines int, out string) func(*bufio.Reader, net.Conn) {
	return func(r *bufio.Reader, c net.Conn) {
		for range lines {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
		io.WriteString(c, out)
	}
}

func TestCheck(t *testing.T) {
	pong := serveOnce(t, answer(3, "+PONG\r\n"))
	loading := serveOnce(t, answer(3, "-LOADING Redis is loading the dataset in memory\r\n"))
	http := serveOnce(t, answer(3, "HTTP/1.1 400 Bad Request\r\n"))
	silent := serveOnce(t, func(r *bufio.Reader, _ net.Conn) { io.Copy(io.Discard, r) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	targets := []sdk.Target{
		{ID: 10, Address: "127.0.0.1", Port: pong},
		{ID: 11, Address: "127.0.0.1", Port: loading},
		{ID: 12, Address: "127.0.0.1", Port: http},
		{ID: 13, Address: "127.0.0.1", Port: silent},
		{ID: 14, Address: "127.0.0.1", Port: closed},
	}
	want := []struct {
		status sdk.Status
		msg    string
	}{
		{sdk.StatusPass, ""},
		{sdk.StatusFail, "PING: server error: LOADING"},
		{sdk.StatusFail, `unexpected reply "HTTP/1.1 400 Bad Request"`},
		{sdk.StatusFail, "i/o timeout"},
		{sdk.StatusFail, "connection refused"},
	}
	c := newChecker()
	if err := c.Configure([]byte(`{"concurrency":2}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rs := c.Check(ctx, targets)
	if len(rs) != len(targets) {
		t.Fatalf("%d results for %d targets", len(rs), len(targets))
	}
	for i, r := range rs {
		if r.ID != targets[i].ID || r.Status != want[i].status || !strings.Contains(r.Message, want[i].msg) {
			t.Errorf("target %d: %+v; want %v containing %q", i, r, want[i].status, want[i].msg)
		}
	}
}

func TestCheckAuth(t *testing.T) {
	// The server checks the pipelined AUTH before answering both.
	port := serveOnce(t, func(r *bufio.Reader, c net.Conn) {
		var lines []string
		for range 8 {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			lines = append(lines, strings.TrimSuffix(l, "\r\n"))
		}
		if strings.Join(lines, " ") == "*2 $4 AUTH $6 s3cret *1 $4 PING" {
			io.WriteString(c, "+OK\r\n+PONG\r\n")
		} else {
			io.WriteString(c, "-WRONGPASS invalid username-password pair\r\n-NOAUTH Authentication required.\r\n")
		}
	})
	for _, tc := range []struct {
		password string
		want     sdk.Status
	}{{"s3cret", sdk.StatusPass}, {"nope!!", sdk.StatusFail}} {
		c := newChecker()
		p, err := c.ParseParams([]byte(`{"password":` + strconv.Quote(tc.password) + `}`))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r := c.Check(ctx, []sdk.Target{{Address: "127.0.0.1", Port: port, Params: p}})[0]
		cancel()
		if r.Status != tc.want {
			t.Errorf("password %q: %+v; want %v", tc.password, r, tc.want)
		}
	}
}

// TestCheckLate: targets whose turn comes after the deadline are not
// failed, they get no verdict.
func TestCheckLate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rs := newChecker().Check(ctx, []sdk.Target{{Address: "127.0.0.1", Port: 1}})
	if rs[0].Status != sdk.StatusUnknown {
		t.Errorf("%+v; want unknown", rs[0])
	}
}
