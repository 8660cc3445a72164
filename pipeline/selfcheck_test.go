package pipeline

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tStep is a source whose every Pull waits for a value on the channel
// ctx.Value("step") and returns an empty batch; io.EOF once the channel is
// closed. A test turns its worker's loop one step at a time. Its Pull waits
// for up to 200 ms, it says (PollWaiter).
type tStep struct{ step chan struct{} }

func (s *tStep) Provision(ctx *Context) error {
	s.step = ctx.Value("step").(chan struct{})
	return nil
}

func (s *tStep) Pull(b *Batch) error {
	if _, ok := <-s.step; !ok {
		return io.EOF
	}
	return nil
}

func (s *tStep) MaxWait() time.Duration { return 200 * time.Millisecond }

// tChecked passes packets and fails its self-check while the flag
// ctx.Value("broken") is set.
type tChecked struct{ broken *atomic.Bool }

func (c *tChecked) Provision(ctx *Context) error {
	c.broken = ctx.Value("broken").(*atomic.Bool)
	return nil
}

func (c *tChecked) Push(int, *Packet) int { return Consumed }

func (c *tChecked) SelfCheck() error {
	if c.broken.Load() {
		return errors.New("socket lost")
	}
	return nil
}

func init() {
	Register(ElementType{Name: "TStep", Outputs: []string{"out"}, New: func() Element { return &tStep{} }})
	Register(ElementType{Name: "TChecked", Inputs: []string{"in"}, New: func() Element { return &tChecked{} }})
}

// TestSelfCheck: a worker is reported before it runs, when its loop stops
// turning for the stall time (ten of its source's 200 ms wait, over the
// 1 s default), when an element fails its own check, and once it stopped.
func TestSelfCheck(t *testing.T) {
	g, errs := Build(Spec{Elements: []ElementDecl{decl("src", "TStep", 1), decl("chk", "TChecked", 2)},
		Connections: []Connection{conn("src", "chk", 3)}})
	if errs != nil {
		t.Fatal(errs)
	}
	step, broken := make(chan struct{}), &atomic.Bool{}
	rt, err := g.Start(Options{Values: map[any]any{"step": step, "broken": broken}})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	expect := func(now time.Time, want string) {
		t.Helper()
		err := rt.SelfCheck(now)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Fatalf("SelfCheck at %v = %v, want %q", now.Sub(time.Unix(0, 0)), err, want)
		}
	}
	t0 := time.Unix(0, 0)
	expect(t0, "worker 0 is not running")
	done := make(chan error)
	go func() { done <- rt.Run(context.Background()) }()
	// A step taken means Run's loop is turning.
	step <- struct{}{}
	expect(t0, "")
	// Two steps: the loop turned at least once since the last check
	// (it counts a turn before it waits for the next step).
	step <- struct{}{}
	step <- struct{}{}
	expect(t0.Add(5*time.Second), "")
	expect(t0.Add(6900*time.Millisecond), "")
	expect(t0.Add(7*time.Second), "worker 0 made no progress for 2s")
	step <- struct{}{}
	step <- struct{}{}
	expect(t0.Add(8*time.Second), "")
	broken.Store(true)
	expect(t0.Add(8*time.Second), "worker 0: `chk` (TChecked): socket lost")
	broken.Store(false)
	close(step)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	expect(t0.Add(8*time.Second), "worker 0 has stopped")
}
