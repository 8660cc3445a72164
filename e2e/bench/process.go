package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
)

// process is a program the benchmark runs in a namespace: its output is
// kept (and copied to the log), and the line saying it is ready noticed.
// lab.Exec puts it in its own process group and has the kernel kill it if
// the benchmark dies; Lab.Down kills whatever is left in the namespaces.
type process struct {
	name  string
	cmd   *exec.Cmd
	ready chan struct{}
	done  chan struct{}
	err   error // Wait's, valid after done

	mu       sync.Mutex
	out      []byte
	partial  []byte
	marker   string
	log      io.Writer
	stopOnce sync.Once
	stopErr  error
}

// start runs args in namespace ns. marker, when not empty, is a substring
// of the output line that says the program is ready.
func start(l *lab.Lab, ns, name, marker string, log io.Writer, args ...string) (*process, error) {
	cmd := l.Exec(ns, args[0], args[1:]...)
	p := &process{name: name, cmd: cmd, ready: make(chan struct{}), done: make(chan struct{}), marker: marker, log: log}
	cmd.Stdout = p
	cmd.Stderr = p
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Write keeps the output and looks for the ready line.
func (p *process) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.out = append(p.out, b...)
	p.partial = append(p.partial, b...)
	for {
		i := strings.IndexByte(string(p.partial), '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if p.log != nil {
			fmt.Fprintf(p.log, "%s: %s\n", p.name, line)
		}
		if p.marker != "" && strings.Contains(line, p.marker) {
			p.marker = ""
			close(p.ready)
		}
	}
	return len(b), nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady waits for the ready line.
func (p *process) waitReady(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.err, p.tail())
	case <-t.C:
		return fmt.Errorf("%s not ready after %v:\n%s", p.name, timeout, p.tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop sends SIGTERM to the process group, waits up to timeout, then
// SIGKILLs it. It returns the program's exit error (nil for a clean stop)
// and is idempotent.
func (p *process) stop(timeout time.Duration) error {
	p.stopOnce.Do(func() {
		_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-p.done:
			p.stopErr = p.err
		case <-t.C:
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("%s did not stop within %v of SIGTERM; killed", p.name, timeout)
		}
	})
	return p.stopErr
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.out)
}

// tail is the end of the output, for error messages.
func (p *process) tail() string {
	s := p.output()
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// procComm is a process's command name (truncated to 15 bytes by the
// kernel).
func procComm(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
