package xdp

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// Capabilities an xlbd with XDP elements needs (linux/capability.h).
const (
	capNetAdmin = 12 // attach the XDP program, query the interface
	capNetRaw   = 13 // open AF_XDP sockets
	capIPCLock  = 14 // lock UMEM beyond RLIMIT_MEMLOCK
	capSysAdmin = 21 // load BPF objects on kernels before CAP_BPF
	capBPF      = 39 // load BPF objects
)

// Preflight says what the host lacks for r, and how to get it: the
// interface, the privileges, AF_XDP sockets, and enough locked memory for
// one socket's UMEM.
func (r *RxXDP) Preflight() []error {
	errs := preflight(r.Interface)
	if err := memlock(uint64(r.Frames) * uint64(r.FrameSize)); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// Preflight says what the host lacks for t: the interface and the
// privileges.
func (t *TxXDP) Preflight() []error { return preflight(t.Interface) }

// preflight checks what every XDP element needs.
func preflight(name string) []error {
	var errs []error
	if _, err := net.InterfaceByName(name); err != nil {
		errs = append(errs, fmt.Errorf("interface %q does not exist in this network namespace (see `ip link`): set the element's interface, or run xlbd where it is", name))
	}
	caps, err := effectiveCaps()
	if err != nil {
		return append(errs, fmt.Errorf("reading this process's capabilities: %w", err))
	}
	var missing []string
	if !caps.has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !caps.has(capNetRaw) {
		missing = append(missing, "CAP_NET_RAW")
	}
	if !caps.has(capBPF) && !caps.has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("xlbd lacks %s: run it as root, or grant them (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK)", strings.Join(missing, ", ")))
		return errs
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.EAFNOSUPPORT):
		errs = append(errs, errors.New("this kernel has no AF_XDP sockets: it needs CONFIG_XDP_SOCKETS (Linux 4.18 or later; 5.4 or later for xlb's XDP program)"))
	case err != nil:
		errs = append(errs, fmt.Errorf("opening an AF_XDP socket: %w", err))
	default:
		unix.Close(fd)
	}
	return errs
}

// memlock checks that one AF_XDP socket's UMEM of size bytes can be
// locked: the kernel charges it to RLIMIT_MEMLOCK unless the process has
// CAP_IPC_LOCK, and refuses the socket with ENOBUFS past it.
func memlock(size uint64) error {
	caps, err := effectiveCaps()
	if err == nil && caps.has(capIPCLock) {
		return nil
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("reading the locked-memory limit: %w", err)
	}
	if lim.Cur == unix.RLIM_INFINITY || lim.Cur >= size {
		return nil
	}
	return fmt.Errorf("the locked-memory limit is %d KiB and one AF_XDP socket locks %d KiB (frames × frame_size): raise it (ulimit -l unlimited; systemd: LimitMEMLOCK=infinity) or grant CAP_IPC_LOCK",
		lim.Cur>>10, size>>10)
}

// capSet is a process's effective capability bits.
type capSet [2]uint32

func (c capSet) has(cap uint) bool { return c[cap/32]&(1<<(cap%32)) != 0 }

// effectiveCaps returns this thread's effective capabilities.
func effectiveCaps() (capSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSet{}, err
	}
	return capSet{data[0].Effective, data[1].Effective}, nil
}
