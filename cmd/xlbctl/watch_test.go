package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/pipeline"
)

// TestRates: each rate is the count's difference over the time between
// two reads; a first read has none; a count that went down (xlbd
// restarted) counts from zero.
func TestRates(t *testing.T) {
	read := func(out, dropped, drops uint64) admin.Counters {
		return admin.Counters{
			Elements: []pipeline.ElementStats{
				{Name: "rx", Type: "T", Out: []pipeline.PortStats{{Port: "a", Packets: out}, {Port: "b", Packets: 1}}},
				{Name: "k", Type: "D", In: []pipeline.PortStats{{Port: "in", Packets: out}}, Dropped: dropped},
			},
			Drops: []admin.Drop{{Element: "k", Reason: "why", Packets: drops}},
		}
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	first := rates(nil, read(100, 10, 10), t0)
	if first.Seconds != 0 || first.Elements[0].Out != 101 || first.Elements[0].OutRate != 0 || first.Drops[0].PerSecond != 0 {
		t.Errorf("first read: %+v", first)
	}
	second := rates(&first, read(300, 50, 50), t0.Add(2*time.Second))
	if second.Seconds != 2 || second.Elements[0].OutRate != 100 || second.Elements[1].InRate != 100 ||
		second.Elements[1].DroppedRate != 20 || second.Drops[0].PerSecond != 20 || second.Elements[0].InRate != 0 {
		t.Errorf("second read: %+v", second)
	}
	restarted := rates(&second, read(50, 5, 5), t0.Add(4*time.Second))
	if restarted.Elements[0].OutRate != 25.5 || restarted.Drops[0].PerSecond != 2.5 {
		t.Errorf("after a restart: %+v", restarted)
	}
	var b bytes.Buffer
	if err := writeCounters(&b, first, true); err != nil {
		t.Fatal(err)
	}
	if want := "rx       T     0    101  0         0        -     -      -           -\n"; !strings.Contains(b.String(), want) {
		t.Errorf("first read's table:\n%s\nlacks\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeCounters(&b, second, true); err != nil {
		t.Fatal(err)
	}
	if want := "k        why     50       20.0\n"; !strings.Contains(b.String(), want) {
		t.Errorf("second read's table:\n%s\nlacks\n%s", b.String(), want)
	}
}

// cancelAfter is a writer that cancels its context once n lines were
// written: an interrupt in the middle of counters --watch.
type cancelAfter struct {
	mu     sync.Mutex
	b      bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b.Write(p)
	if bytes.Count(c.b.Bytes(), []byte("\n")) >= c.n {
		c.cancel()
	}
	return len(p), nil
}

// TestWatch runs counters --watch against a daemon whose counters grow by
// 100 packets a read: -o json prints a line per read with its rates, and
// the command ends without error when its context does (as on Ctrl-C);
// the table redraws with the rates.
func TestWatch(t *testing.T) {
	sock, _ := fakeDaemon(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &cancelAfter{n: 3, cancel: cancel}
	var errb bytes.Buffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"-s", sock, "-o", "json", "counters", "--watch", "--interval", "20ms"}, out, &errb)
	}()
	select {
	case rc := <-done:
		if rc != 0 {
			t.Fatalf("rc %d: %s", rc, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("counters --watch did not stop when its context ended")
	}
	lines := strings.Split(strings.TrimSpace(out.b.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out.b.String())
	}
	for i, l := range lines[:3] {
		var r counterRates
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		e := r.Elements[0]
		if e.Element != "rx" || e.Out != 100*uint64(i+1) || (i == 0) != (r.Seconds == 0) {
			t.Errorf("line %d: %+v", i, r)
		}
		// 100 packets over the seconds between the reads, as measured.
		if i > 0 && (e.OutRate != 100/r.Seconds || r.Drops[0].PerSecond != 10/r.Seconds) {
			t.Errorf("line %d: rates %v and %v over %vs, want 100 and 10 packets over that", i, e.OutRate, r.Drops[0].PerSecond, r.Seconds)
		}
	}

	ctx, cancel = context.WithCancel(context.Background())
	// A header, 3 element lines, a blank, 2 drop lines; then a blank line
	// and the second read.
	out = &cancelAfter{n: 14, cancel: cancel}
	if rc := run(ctx, []string{"-s", sock, "counters", "-w", "--interval", "20ms"}, out, &errb); rc != 0 {
		t.Fatalf("table: rc %d: %s", rc, errb.String())
	}
	frames := strings.Split(out.b.String(), "\n\n")
	if len(frames) < 4 || !strings.Contains(frames[0], "(Ctrl-C to stop)\nelement  type      in   out  consumed  dropped  in/s  out/s  consumed/s  dropped/s\n") ||
		!strings.Contains(frames[2], "dropped/s") || strings.Contains(frames[2], " -\n") {
		t.Errorf("table frames:\n%s", out.b.String())
	}

	if rc := run(context.Background(), []string{"-s", sock, "counters", "-w", "--interval", "0s"}, out, &errb); rc != 1 ||
		!strings.Contains(errb.String(), "--interval 0s: want a positive duration") {
		t.Errorf("--interval 0s: rc %d %s", rc, errb.String())
	}
}

// TestWatchInterruptedRead: an interrupt while a read waits for xlbd ends
// the watch without error; a read that fails by itself is the error.
func TestWatchInterruptedRead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reads := 0
	get := func(ctx context.Context) (admin.Counters, error) {
		if reads++; reads == 2 {
			cancel()
			<-ctx.Done()
			return admin.Counters{}, ctx.Err()
		}
		return admin.Counters{}, nil
	}
	var b bytes.Buffer
	if err := watch(ctx, &b, get, time.Millisecond, true); err != nil || reads != 2 || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("interrupted in the second read: %v after %d reads:\n%s", err, reads, b.String())
	}
	failed := func(context.Context) (admin.Counters, error) {
		return admin.Counters{}, errors.New("xlbd is not running")
	}
	if err := watch(context.Background(), &b, failed, time.Millisecond, true); err == nil || err.Error() != "xlbd is not running" {
		t.Errorf("a failed read: %v", err)
	}
}

// TestGraph: xlbctl graph prints the daemon's DOT as it is.
func TestGraph(t *testing.T) {
	sock, _ := fakeDaemon(t)
	out, errs, rc := xlbctl("-s", sock, "graph")
	if rc != 0 || out != "digraph xlb {\n\t\"rx\" -> \"drop\" [taillabel=\"out\", headlabel=\"in\", label=\"5\"];\n}\n" {
		t.Errorf("rc %d %q %s", rc, out, errs)
	}
}
