package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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
	if err := r.modePreflight(xdpFeatures); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// modePreflight says whether r's interface can run XDP in r's mode, asking
// features (xdpFeatures) what its driver can do.
func (r *RxXDP) modePreflight(features func(ifindex int) (uint64, bool)) error {
	ifc, err := net.InterfaceByName(r.Interface)
	if err != nil {
		return nil // reported by preflight
	}
	f, known := features(ifc.Index)
	return modeProblem(r.Interface, r.Mode, f, known)
}

// XDP actions a driver runs natively (linux/netdev.h, enum netdev_xdp_act).
const (
	xdpActBasic    = 1 << 0 // XDP_PASS, XDP_DROP, XDP_ABORTED, XDP_TX
	xdpActRedirect = 1 << 1 // XDP_REDIRECT, to an XSKMAP among others
)

// The netdev generic netlink family (linux/netdev.h).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXDPFeatures = 3
)

// xdpFeatures asks the kernel which XDP actions the driver of the
// interface at ifindex runs natively (netdev_xdp_act bits). known is false
// when the kernel does not say (before Linux 6.3 there is no netdev
// family): then only the attach tells.
func xdpFeatures(ifindex int) (features uint64, known bool) {
	fam, err := netlink.GenlFamilyGet("netdev")
	if err != nil {
		return 0, false
	}
	// A dump, filtered here: the single-device request (an ifindex given)
	// fails with EINVAL on the 6.18 kernel xlb is tested on, whose dump
	// lists only some interfaces and now and then fails, so it is asked a
	// few times. What the kernel does not answer is left to the attach.
	var msgs [][]byte
	for range 5 {
		req := nl.NewNetlinkRequest(int(fam.ID), unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		req.AddData(&nl.Genlmsg{Command: netdevCmdDevGet, Version: uint8(fam.Version)})
		if msgs, err = req.Execute(unix.NETLINK_GENERIC, 0); err == nil {
			break
		}
	}
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if len(m) < nl.SizeofGenlmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[nl.SizeofGenlmsg:])
		if err != nil {
			return 0, false
		}
		var index uint32
		var feat []byte
		for _, a := range attrs {
			switch {
			case a.Attr.Type == netdevAttrIfindex && len(a.Value) == 4:
				index = binary.NativeEndian.Uint32(a.Value)
			case a.Attr.Type == netdevAttrXDPFeatures && len(a.Value) == 8:
				feat = a.Value
			}
		}
		if int(index) == ifindex && feat != nil {
			return binary.NativeEndian.Uint64(feat), true
		}
	}
	// The interface is not in the dump: nothing is known of it.
	return 0, false
}

// modeProblem says why an RxXDP with mode cannot attach to ifname, whose
// driver runs the XDP actions features natively (when known): xlb's
// program passes what is not for a VIP and redirects the rest to AF_XDP
// sockets, so native mode needs XDP_PASS and XDP_REDIRECT in the driver.
// Generic mode runs on any interface.
func modeProblem(ifname, mode string, features uint64, known bool) error {
	if mode != "native" && mode != "" || !known {
		return nil
	}
	const need = xdpActBasic | xdpActRedirect
	if features&need == need {
		return nil
	}
	return fmt.Errorf(`interface %q cannot run XDP in native mode: its driver lacks native XDP_PASS and XDP_REDIRECT (the kernel's netdev XDP features are %#x): set mode = "generic" on the element (the kernel then builds a socket buffer for every packet first: slower, but any interface works), or use a NIC whose driver has XDP`, ifname, features)
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
