package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/metrics"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	xhcl "github.com/xlbproject/xlb/hcl"
)

// A file's size and nesting are bounded before it is parsed (package hcl),
// but evaluating it is not: a few lines of locals that each double the one
// before, or for-expressions nested over range(1024), ask for gigabytes.
// Evaluated inside xlbd run, such a file would end the process that is
// forwarding (out of memory) or stall it. So a reload is first evaluated by
// a child xlbd (validate -plugins=false) held to these bounds, and xlbd run
// evaluates the file itself only when the child finished. Evaluation is
// deterministic (no function reads the clock, files or the environment), so
// the child's cost is the daemon's.
const (
	// precheckHeap bounds the child's live heap: a load of the largest
	// file the loader accepts (hcl.MaxFileSize) peaks near 1.5 GiB.
	precheckHeap = 3 << 30
	// precheckCPU bounds its CPU time, and precheckWall its run.
	precheckCPU  = time.Minute
	precheckWall = 2 * time.Minute
)

// exitOverHeap is the exit code of a bounded validate whose heap grew past
// its bound.
const exitOverHeap = 3

// precheck runs the child: exe with the validate command, bounded.
//
// What was evaluated before, unchanged, costs what it cost then, and the
// daemon survived it; a document of literals only (hcl.Literal) costs no
// more than its size. So the child is given only the documents that are
// neither, and is not run at all when the main file is the one evaluated
// before and no such document is left: a change to one backend among
// thousands costs neither a process nor a second load of everything.
type precheck struct {
	exe string
	env []string // added to the child's environment
	// heap and cpu are the child's bounds (precheckHeap and precheckCPU
	// unless a test lowers them).
	heap int64
	cpu  time.Duration
	// main and docs are what was last evaluated, by the child or by the
	// daemon's start-up: the main file's text and each document's content
	// by name. Used by one goroutine at a time, as run is.
	main []byte
	docs map[string][]byte
}

func newPrecheck() *precheck {
	// /proc/self/exe is this very binary, even if the file was replaced
	// since xlbd started.
	return &precheck{exe: "/proc/self/exe", heap: precheckHeap, cpu: precheckCPU}
}

// errPrecheck is a file the child could not evaluate within its bounds.
type errPrecheck struct{ msg string }

func (e *errPrecheck) Error() string { return e.msg }

// run evaluates the file at path with the config sources' documents docs
// in the child: they come from a store others write (etcd), so a value
// there must not take xlbd down either. It returns nil when the child
// evaluated them (whether or not they have errors: xlbd run reports those
// itself), an *errPrecheck when they broke a bound, and another error
// when the child could not be run.
func (p *precheck) run(path string, vars varFlags, docs []sourceDoc) error {
	main, err := os.ReadFile(path)
	if err != nil {
		// The daemon's own load reports it.
		return nil
	}
	var send []sourceDoc
	for _, d := range docs {
		if old, ok := p.docs[d.Name]; (!ok || !bytes.Equal(old, d.Content) || !bytes.Equal(main, p.main)) &&
			!xhcl.Literal(xhcl.Fragment{Name: d.Name, Src: d.Content, JSON: d.Format == "json"}) {
			send = append(send, d)
		}
	}
	if p.main != nil && bytes.Equal(main, p.main) && len(send) == 0 {
		p.evaluated(main, docs)
		return nil
	}
	if docs != nil && send == nil {
		send = []sourceDoc{}
	}
	if err := p.child(path, vars, send); err != nil {
		return err
	}
	p.evaluated(main, docs)
	return nil
}

// evaluated records main and docs as evaluated, by the child or by the
// daemon itself at start-up.
func (p *precheck) evaluated(main []byte, docs []sourceDoc) {
	p.main = main
	p.docs = make(map[string][]byte, len(docs))
	for _, d := range docs {
		p.docs[d.Name] = d.Content
	}
}

// child evaluates the file at path with docs in the child xlbd.
func (p *precheck) child(path string, vars varFlags, docs []sourceDoc) error {
	args := []string{"validate", "-plugins=false",
		fmt.Sprintf("-max-heap=%d", p.heap), fmt.Sprintf("-max-cpu=%s", p.cpu)}
	var stdin []byte
	if docs != nil {
		var err error
		if stdin, err = json.Marshal(docs); err != nil {
			return err
		}
		args = append(args, "-"+docsFlag)
	}
	for name, v := range vars {
		args = append(args, "-var", name+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), precheckWall)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.exe, append(args, path)...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return &errPrecheck{fmt.Sprintf("evaluating it took more than %v", precheckWall)}
	case !errors.As(err, &ee):
		return fmt.Errorf("checking the file in a child xlbd: %w", err)
	case ee.ExitCode() == 1:
		return nil
	case ee.ExitCode() == exitOverHeap:
		return &errPrecheck{fmt.Sprintf("evaluating it needs more than %d MiB of memory", p.heap>>20)}
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && (ws.Signal() == syscall.SIGXCPU || ws.Signal() == syscall.SIGKILL) {
		return &errPrecheck{fmt.Sprintf("evaluating it takes more than %v of CPU or more memory than the machine has", p.cpu)}
	}
	return &errPrecheck{fmt.Sprintf("the child xlbd that evaluated it failed (%v): %s", err, lastLine(stderr.String()))}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// bound holds this process (a child xlbd validate) to a heap of maxHeap
// bytes and maxCPU of CPU time: past the heap it exits with exitOverHeap,
// past the CPU time the kernel stops it (SIGXCPU). It also offers itself
// first to the kernel's out-of-memory killer, so that a single huge
// allocation the watch cannot see in time costs this process, never the
// daemon that started it.
func bound(maxHeap int64, maxCPU time.Duration) error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0); err != nil {
		return fmt.Errorf("offering to the OOM killer: %w", err)
	}
	if maxCPU > 0 {
		s := uint64(maxCPU.Seconds() + 0.5)
		if err := unix.Setrlimit(unix.RLIMIT_CPU, &unix.Rlimit{Cur: s, Max: s + 5}); err != nil {
			return fmt.Errorf("limiting CPU time: %w", err)
		}
	}
	if maxHeap > 0 {
		go watchHeap(uint64(maxHeap))
	}
	return nil
}

// watchHeap exits the process when its live heap passes max. It samples
// often enough that a value doubling from the bound is seen before the
// next doubling completes.
func watchHeap(max uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	for range time.Tick(2 * time.Millisecond) {
		metrics.Read(s)
		if s[0].Value.Uint64() > max {
			fmt.Fprintf(os.Stderr, "xlbd validate: the heap passed %d MiB\n", max>>20)
			os.Exit(exitOverHeap)
		}
	}
}
