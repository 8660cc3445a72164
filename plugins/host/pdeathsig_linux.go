package host

import (
	"os/exec"
	"syscall"
)

// setPdeathsig makes the kernel SIGKILL the plugin when the thread that
// started it exits, which includes xlbd dying by SIGKILL. The supervisor
// goroutine that starts the plugin is locked to its OS thread for the
// plugin's lifetime (see supervise), so a Go runtime thread exiting cannot
// fire it early.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
