package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// XSKStats are the kernel's counters of the program's AF_XDP sockets
// (XDP_STATISTICS). The benchmark reads them itself, the same way for
// both programs whatever they export: it takes a copy of each socket's
// descriptor from the program with pidfd_getfd(2) and asks the kernel.
// (sock_diag would need CONFIG_XDP_SOCKETS_DIAG, which kernels often lack.)
type XSKStats struct {
	RxDropped   uint64 // dropped without the RX ring full: no frame on the fill ring (also in FillEmpty), too big for a frame
	RxInvalid   uint64 // invalid descriptors on the fill ring
	RxFull      uint64 // dropped with the RX ring full: the program did not keep up
	FillEmpty   uint64 // the kernel found no frame on the fill ring
	TxInvalid   uint64 // invalid descriptors on the TX ring
	TxRingEmpty uint64 // wake-ups with nothing on the TX ring
	Sockets     int    // the program's AF_XDP sockets
}

// Lost is what the socket counters say the kernel dropped on receive
// (rx_dropped and rx_ring_full count apart; fill_ring_empty is part of
// rx_dropped).
func (s XSKStats) Lost() uint64 { return s.RxDropped + s.RxFull }

func (s XSKStats) sub(o XSKStats) XSKStats {
	return XSKStats{RxDropped: s.RxDropped - o.RxDropped, RxInvalid: s.RxInvalid - o.RxInvalid,
		RxFull: s.RxFull - o.RxFull, FillEmpty: s.FillEmpty - o.FillEmpty,
		TxInvalid: s.TxInvalid - o.TxInvalid, TxRingEmpty: s.TxRingEmpty - o.TxRingEmpty, Sockets: s.Sockets}
}

func (s *XSKStats) add(o XSKStats) {
	s.RxDropped += o.RxDropped
	s.RxInvalid += o.RxInvalid
	s.RxFull += o.RxFull
	s.FillEmpty += o.FillEmpty
	s.TxInvalid += o.TxInvalid
	s.TxRingEmpty += o.TxRingEmpty
}

func fromKernel(k unix.XDPStatistics) XSKStats {
	return XSKStats{RxDropped: k.Rx_dropped, RxInvalid: k.Rx_invalid_descs, RxFull: k.Rx_ring_full,
		FillEmpty: k.Rx_fill_ring_empty_descs, TxInvalid: k.Tx_invalid_descs, TxRingEmpty: k.Tx_ring_empty_descs}
}

// xskSockets reads the counters of every AF_XDP socket process pid holds,
// by the socket's inode.
func xskSockets(pid int) (map[string]XSKStats, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pfd)
	m := map[string]XSKStats{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		var target int
		if _, err := fmt.Sscan(e.Name(), &target); err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, target, 0)
		if err != nil {
			continue // closed meanwhile
		}
		st, ok, err := xdpStatistics(fd)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("process %d descriptor %d: %w", pid, target, err)
		}
		if ok {
			m[link] = fromKernel(st)
		}
	}
	return m, nil
}

// xdpStatistics reads XDP_STATISTICS of fd, false when it is not an
// AF_XDP socket.
func xdpStatistics(fd int) (unix.XDPStatistics, bool, error) {
	var st unix.XDPStatistics
	if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || d != unix.AF_XDP {
		return st, false, nil
	}
	size := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return st, false, fmt.Errorf("getsockopt XDP_STATISTICS: %w", e)
	}
	return st, true, nil
}

// xskWindow is the change of the sockets' counters between two readings;
// a socket opened in between started at zero.
func xskWindow(s0, s1 map[string]XSKStats) XSKStats {
	var d XSKStats
	for k, b := range s1 {
		d.Sockets++
		d.add(b.sub(s0[k]))
	}
	return d
}
