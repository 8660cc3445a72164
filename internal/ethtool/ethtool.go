// Package ethtool makes the few SIOCETHTOOL requests xlb needs, in code, so
// that nothing depends on the ethtool command being installed. Requests act
// on the interface as seen from the calling thread's network namespace.
package ethtool

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifreqData is struct ifreq with its ifr_data member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ioctl sends one SIOCETHTOOL request; data points at the command's struct,
// whose first field is the command number.
func ioctl(iface string, data unsafe.Pointer) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], iface)
	ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(data)
	if errno != 0 {
		return errno
	}
	return nil
}

// value is struct ethtool_value.
type value struct{ cmd, data uint32 }

// SetTxChecksum turns TX checksum offload on or off (ethtool -K iface tx
// on|off, through the legacy ETHTOOL_STXCSUM request) and checks the result.
func SetTxChecksum(iface string, on bool) error {
	want := uint32(0)
	if on {
		want = 1
	}
	v := value{cmd: unix.ETHTOOL_STXCSUM, data: want}
	if err := ioctl(iface, unsafe.Pointer(&v)); err != nil {
		return fmt.Errorf("%s: set tx checksum offload: %w", iface, err)
	}
	got, err := TxChecksum(iface)
	if err != nil {
		return err
	}
	if got != on {
		return fmt.Errorf("%s: tx checksum offload still %v", iface, got)
	}
	return nil
}

// TxChecksum reports whether TX checksum offload is on.
func TxChecksum(iface string) (bool, error) {
	v := value{cmd: unix.ETHTOOL_GTXCSUM}
	if err := ioctl(iface, unsafe.Pointer(&v)); err != nil {
		return false, fmt.Errorf("%s: get tx checksum offload: %w", iface, err)
	}
	return v.data != 0, nil
}

// channels is struct ethtool_channels.
type channels struct {
	cmd                                         uint32
	maxRx, maxTx, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

// RxQueues returns how many RX queues the interface uses now (ethtool -l:
// combined plus RX-only channels). That is the number of queues an AF_XDP
// socket can bind to, which may be fewer than the queues the device
// allocated (netlink's IFLA_NUM_RX_QUEUES): veth allocates one per possible
// CPU and uses one. When the driver does not report channels it counts
// /sys/class/net/IFACE/queues/rx-*.
func RxQueues(iface string) (int, error) {
	c := channels{cmd: unix.ETHTOOL_GCHANNELS}
	err := ioctl(iface, unsafe.Pointer(&c))
	if err == nil && c.rxCount+c.combinedCount > 0 {
		return int(c.rxCount + c.combinedCount), nil
	}
	qs, globErr := filepath.Glob(filepath.Join("/sys/class/net", iface, "queues", "rx-*"))
	if globErr == nil && len(qs) > 0 {
		return len(qs), nil
	}
	if err == nil {
		err = os.ErrNotExist
	}
	return 0, fmt.Errorf("%s: number of RX queues: %w", iface, err)
}

// Stats returns the driver's statistics (ethtool -S) by name: for veth,
// per queue, such as rx_queue_1_xdp_packets.
func Stats(iface string) (map[string]uint64, error) {
	const ssStats, nameLen = 1, 32 // ETH_SS_STATS, ETH_GSTRING_LEN
	// struct ethtool_sset_info with one u32 of data.
	info := struct {
		cmd, reserved uint32
		mask          uint64
		n             uint32
	}{cmd: unix.ETHTOOL_GSSET_INFO, mask: 1 << ssStats}
	if err := ioctl(iface, unsafe.Pointer(&info)); err != nil {
		return nil, fmt.Errorf("%s: statistics: %w", iface, err)
	}
	if info.mask == 0 || info.n == 0 {
		return map[string]uint64{}, nil
	}
	n := int(info.n)
	// struct ethtool_gstrings and struct ethtool_stats, each with its
	// array after a header of 12 and 8 bytes; u64 words keep the stats'
	// alignment.
	names := make([]byte, 12+n*nameLen)
	*(*[3]uint32)(unsafe.Pointer(&names[0])) = [3]uint32{unix.ETHTOOL_GSTRINGS, ssStats, uint32(n)}
	if err := ioctl(iface, unsafe.Pointer(&names[0])); err != nil {
		return nil, fmt.Errorf("%s: statistics' names: %w", iface, err)
	}
	vals := make([]uint64, 1+n)
	*(*[2]uint32)(unsafe.Pointer(&vals[0])) = [2]uint32{unix.ETHTOOL_GSTATS, uint32(n)}
	if err := ioctl(iface, unsafe.Pointer(&vals[0])); err != nil {
		return nil, fmt.Errorf("%s: statistics: %w", iface, err)
	}
	m := make(map[string]uint64, n)
	for i := range n {
		name := names[12+i*nameLen : 12+(i+1)*nameLen]
		m[unix.ByteSliceToString(name)] = vals[1+i]
	}
	return m, nil
}
