package bfd

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsgLenSize is the size of cmsghdr's length field (size_t).
const cmsgLenSize = int(unsafe.Sizeof(unix.Cmsghdr{}.Len))

// hopLimit returns the TTL (IP_TTL) or hop limit (IPV6_HOPLIMIT) carried in
// the control messages oob, or -1 when there is none. Unlike
// unix.ParseSocketControlMessage it does not allocate, and it reads the
// header field by field, so oob needs no alignment.
func hopLimit(oob []byte) int {
	hdr := unix.CmsgLen(0)
	for len(oob) >= hdr {
		var l int
		if cmsgLenSize == 8 {
			l = int(binary.NativeEndian.Uint64(oob))
		} else {
			l = int(binary.NativeEndian.Uint32(oob))
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		if l < hdr || l > len(oob) {
			return -1
		}
		if (level == unix.IPPROTO_IP && typ == unix.IP_TTL) ||
			(level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT) {
			if l-hdr < 4 {
				return -1
			}
			return int(int32(binary.NativeEndian.Uint32(oob[hdr:])))
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(oob) {
			return -1
		}
		oob = oob[next:]
	}
	return -1
}
