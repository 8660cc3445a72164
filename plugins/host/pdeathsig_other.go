//go:build !linux

package host

import (
	"os/exec"
	"syscall"
)

// setPdeathsig does nothing outside Linux: there is no parent-death signal,
// and a plugin outlives a SIGKILLed xlbd until it notices its stdio closing.
func setPdeathsig(*exec.Cmd, syscall.Signal) {}
