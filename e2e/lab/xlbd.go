package lab

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// XLBD is an xlbd process running in an LB node's namespace.
type XLBD struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	log    *logTail
	exited chan struct{}
	err    error
}

// StartXLBD runs `bin run -config config args...` in node's namespace and
// waits until it has provisioned every worker (program attached, sockets
// bound, next hop resolved), which xlbd announces with a "pipeline running"
// log line. It fails with xlbd's last log lines when xlbd exits first or is
// not ready within 10 s. Down stops it if the caller does not.
func (l *Lab) StartXLBD(node Node, bin, config string, args ...string) (*XLBD, error) {
	x := &XLBD{log: &logTail{ready: make(chan struct{})}, exited: make(chan struct{})}
	x.cmd = l.Exec(node.NS, bin, append([]string{"run", "-config", config}, args...)...)
	x.cmd.Stdout = &x.stdout
	x.cmd.Stderr = io.MultiWriter(x.cmd.Stderr, x.log)
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: StartXLBD after Down")
	}
	if err := x.cmd.Start(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	p := &proc{name: bin, cmd: x.cmd, done: x.exited}
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	go func() {
		x.err = x.cmd.Wait()
		close(x.exited)
	}()
	select {
	case <-x.log.ready:
		return x, nil
	case <-x.exited:
		return nil, fmt.Errorf("xlbd exited before it was ready (%v):\n%s", x.err, x.log.tail())
	case <-time.After(10 * time.Second):
		_, _ = x.Stop()
		return nil, fmt.Errorf("xlbd not ready within 10 s:\n%s", x.log.tail())
	}
}

// Stop sends SIGTERM, waits for xlbd to exit, and returns what it printed
// on standard output (its counters) and its exit error.
func (x *XLBD) Stop() (string, error) {
	select {
	case <-x.exited:
	default:
		_ = x.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-x.exited:
		case <-time.After(10 * time.Second):
			_ = x.cmd.Process.Kill()
			<-x.exited
			return x.stdout.String(), fmt.Errorf("xlbd did not stop within 10 s of SIGTERM")
		}
	}
	return x.stdout.String(), x.err
}

// Signal sends sig to xlbd (SIGHUP: reload the service configuration).
func (x *XLBD) Signal(sig syscall.Signal) error { return x.cmd.Process.Signal(sig) }

// Log returns xlbd's last log lines.
func (x *XLBD) Log() string { return x.log.tail() }

// logTail watches a log for xlbd's ready line and keeps its last lines.
type logTail struct {
	mu    sync.Mutex
	ready chan struct{}
	once  sync.Once
	lines []string
}

func (w *logTail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.lines = append(w.lines, line)
		if strings.Contains(line, `msg="pipeline running"`) {
			w.once.Do(func() { close(w.ready) })
		}
	}
	if len(w.lines) > 30 {
		w.lines = w.lines[len(w.lines)-30:]
	}
	return len(p), nil
}

func (w *logTail) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines, "\n")
}
