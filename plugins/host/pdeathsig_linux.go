package host

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel send sig to the plugin when the thread
// that started it exits, which includes xlbd dying by SIGKILL. The
// supervisor goroutine that starts the plugin is locked to its OS thread
// for the plugin's lifetime (see supervise), so a Go runtime thread exiting
// cannot fire it early.
func setPdeathsig(cmd *exec.Cmd, sig syscall.Signal) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: sig}
}
