package client

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// TestHold runs held connections against a local server and checks what
// they tell: answers and their backend, a bad answer counted on a live
// connection, a backend change, a stall, and connections the server closes
// counted dead.
func TestHold(t *testing.T) {
	var backend atomic.Value
	backend.Store("a")
	var status, stall atomic.Int64
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := stall.Swap(0); d > 0 {
			time.Sleep(time.Duration(d))
		}
		w.Header().Set("X-Backend", backend.Load().(string))
		w.WriteHeader(int(status.Load()))
		w.Write([]byte("x\n"))
	}))
	defer srv.Close()
	target := netip.MustParseAddrPort(srv.Listener.Addr().String())
	const interval = 20 * time.Millisecond
	h, err := Hold(HoldOptions{Conns: 10, Targets: []netip.AddrPort{target}, Interval: interval, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()

	// waitFor polls snapshots until ok, for up to 5 s.
	waitFor := func(what string, ok func(Snapshot) bool) Snapshot {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			s := h.Snapshot()
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, s.Summary)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	s := waitFor("every connection answered 3 times", func(s Snapshot) bool {
		for _, c := range s.Conns {
			if c.Answers < 3 {
				return false
			}
		}
		return true
	})
	if s.Summary.Alive != 10 || s.Summary.Dead != 0 || s.Summary.Errors != 0 || s.Summary.Backends["a"] != 10 || s.Summary.Moved != 0 {
		t.Fatalf("%v", s.Summary)
	}
	ports := map[uint16]bool{}
	for _, c := range s.Conns {
		ports[c.Local.Port()] = true
		if c.Target != target || c.Backend() != "a" || c.MaxStall < interval/2 || c.Requests-c.Answers > 1 {
			t.Errorf("%+v", c)
		}
	}
	if len(ports) != 10 {
		t.Errorf("%d distinct source ports, want 10", len(ports))
	}

	// A bad answer is an error; the connection lives on.
	status.Store(503)
	s = waitFor("errors", func(s Snapshot) bool { return s.Summary.Errors >= 10 })
	status.Store(200)
	if s.Summary.Dead != 0 || s.Summary.FirstError == "" {
		t.Errorf("after 503s: %v", s.Summary)
	}

	// Another backend answers: the connections saw two.
	backend.Store("b")
	s = waitFor("moved", func(s Snapshot) bool { return s.Summary.Moved == 10 })
	if s.Conns[0].Backend() != "a" || len(s.Conns[0].Backends) != 2 {
		t.Errorf("%+v", s.Conns[0])
	}

	// One answer held 300 ms: that connection's stall.
	stall.Store(int64(300 * time.Millisecond))
	s = waitFor("stall", func(s Snapshot) bool { return s.Summary.MaxStall >= 300*time.Millisecond })
	if s.Summary.Dead != 0 {
		t.Errorf("a stall killed a connection: %v", s.Summary)
	}

	// The server closes every connection: all dead, none reopened.
	srv.CloseClientConnections()
	s = waitFor("dead", func(s Snapshot) bool { return s.Summary.Dead == 10 })
	if s.Summary.Alive != 0 {
		t.Errorf("%v", s.Summary)
	}
	fin := h.Stop()
	if fin.Summary.Dead != 10 || fin.Summary.Alive != 0 {
		t.Errorf("final: %v", fin.Summary)
	}
}

// TestHoldStop: connections that lived until Stop are alive in its
// snapshot, and Stop returns the same state twice.
func TestHoldStop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "a")
	}))
	defer srv.Close()
	target := netip.MustParseAddrPort(srv.Listener.Addr().String())
	h, err := Hold(HoldOptions{Conns: 5, Targets: []netip.AddrPort{target}, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	s := h.Stop()
	if s.Summary.Alive != 5 || s.Summary.Dead != 0 || s.Summary.Conns != 5 || s.Summary.Errors != 0 {
		t.Errorf("%v", s.Summary)
	}
	if s2 := h.Stop(); s2.Time != s.Time {
		t.Error("second Stop returned another snapshot")
	}
}

// TestHoldDialFails: Hold fails when a connection cannot be opened.
func TestHoldDialFails(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	target := netip.MustParseAddrPort(srv.Listener.Addr().String())
	srv.Close()
	if _, err := Hold(HoldOptions{Conns: 3, Targets: []netip.AddrPort{target}}); err == nil {
		t.Error("Hold to a closed port succeeded")
	}
	if _, err := Hold(HoldOptions{}); err == nil {
		t.Error("Hold without targets succeeded")
	}
}
