package lab

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
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
	return l.StartXLBDWith(node, nil, bin, config, args...)
}

// StartXLBDWith is StartXLBD with xlbd started by the command wrap (such
// as setpriv with its options), which execs it in place.
func (l *Lab) StartXLBDWith(node Node, wrap []string, bin, config string, args ...string) (*XLBD, error) {
	x := &XLBD{log: &logTail{ready: make(chan struct{})}, exited: make(chan struct{})}
	// Every node its own admin socket: the namespaces share the
	// filesystem, and a second xlbd refuses a socket another answers on.
	if !slices.Contains(args, "-admin-socket") {
		args = append([]string{"-admin-socket", filepath.Join(l.dir, node.Name+".admin.sock")}, args...)
	}
	argv := append(append(append([]string{}, wrap...), bin, "run", "-config", config), args...)
	x.cmd = l.Exec(node.NS, argv[0], argv[1:]...)
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

// LogMark marks the log's current end, for WaitLog.
func (x *XLBD) LogMark() int { return x.log.len() }

// WaitLog waits up to timeout for a log line after mark containing every
// one of subs, and returns how long it waited.
func (x *XLBD) WaitLog(mark int, timeout time.Duration, subs ...string) (time.Duration, error) {
	start := time.Now()
	for !x.log.has(mark, subs...) {
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("xlbd did not log %q within %v:\n%s", subs, timeout, x.log.tail())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), nil
}

// logTail watches a log for xlbd's ready line and keeps its lines.
type logTail struct {
	mu    sync.Mutex
	ready chan struct{}
	once  sync.Once
	lines []string
}

// tailLines is how many of the last lines Log returns.
const tailLines = 30

func (w *logTail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.lines = append(w.lines, line)
		if strings.Contains(line, `msg="pipeline running"`) {
			w.once.Do(func() { close(w.ready) })
		}
	}
	return len(p), nil
}

func (w *logTail) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.lines[max(0, len(w.lines)-tailLines):], "\n")
}

// has reports whether a line from the from-th on contains every one of subs.
func (w *logTail) has(from int, subs ...string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range w.lines[min(from, len(w.lines)):] {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return true
		}
	}
	return false
}

func (w *logTail) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

// Pid is xlbd's process ID (its plugins are its children).
func (x *XLBD) Pid() int { return x.cmd.Process.Pid }
