package lab

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Capture is an AF_PACKET socket that reads the IP packets (SOCK_DGRAM)
// arriving on an interface of the namespace it was opened in (open it
// inside Lab.Do). Packets an XDP program redirects elsewhere are not seen.
type Capture struct{ fd int }

// OpenCapture starts capturing on iface.
func OpenCapture(iface string) (*Capture, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(hostToNet(unix.ETH_P_ALL)))
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: hostToNet(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Capture{fd: fd}, nil
}

// Close stops the capture.
func (c *Capture) Close() { unix.Close(c.fd) }

// Next returns the next incoming packet for which match is true, or an
// error after timeout.
func (c *Capture) Next(timeout time.Duration, match func([]byte) bool) ([]byte, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 65536)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("no matching packet within %v", timeout)
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, err
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func hostToNet(v uint16) uint16 { return v<<8 | v>>8 }
