package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

// bigEndian returns ngNanos written big-endian: every 32-bit field and
// the link type swapped, the packet data as it is.
func bigEndian() []byte {
	b := bytes.Clone(ngNanos)
	swap32 := func(off int) { binary.BigEndian.PutUint32(b[off:], binary.LittleEndian.Uint32(b[off:])) }
	for _, off := range []int{4, 8, 24, 28, 32, 40, 56, 60, 64, 68, 72, 76, 80, 84, 104} {
		swap32(off)
	}
	swap16 := func(off int) { binary.BigEndian.PutUint16(b[off:], binary.LittleEndian.Uint16(b[off:])) }
	for _, off := range []int{12, 14, 36, 44, 46} { // version, link type, if_tsresol's code and length
		swap16(off)
	}
	return b
}

// replayAll replays file once through RxPcap and returns the packets it
// delivered, the error it ended with (nil at a clean end) and the bytes
// allocated meanwhile.
func replayAll(t *testing.T, file []byte) (pkts int, err error, allocated uint64) {
	t.Helper()
	name := writeFile(t, file)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rx := &RxPcap{File: name, Repeat: 1}
	if err := rx.Provision(pipeline.NewContext("rx", 0, 1, nil)); err != nil {
		runtime.ReadMemStats(&after)
		return 0, err, after.TotalAlloc - before.TotalAlloc
	}
	defer rx.Cleanup()
	var b pipeline.Batch
	for {
		b.Reset()
		err = rx.Pull(&b)
		pkts += b.N
		if err != nil {
			break
		}
	}
	runtime.ReadMemStats(&after)
	if err == io.EOF {
		err = nil
	}
	return pkts, err, after.TotalAlloc - before.TotalAlloc
}

// TestNgGuard: lengths a pcapng file declares no longer make pcapgo
// allocate what they say (up to 4 GiB before the read fails): a snap
// length above maxCaptureLen is read as maxCaptureLen, and a captured
// length that does not fit its block, or the file, is an error before
// pcapgo sizes a buffer for it. Each file is replayed with less than
// 16 MiB allocated (RxPcap's frames, about 600 KiB, and pcapgo's
// buffers); before the guard the first three allocated 4 GiB each.
func TestNgGuard(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	with := func(b []byte, f func([]byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	// A Simple Packet Block of the 14-byte packet: type, length 32,
	// original length, data, padding, length.
	spb := slices.Concat([]byte{3, 0, 0, 0, 32, 0, 0, 0, 14, 0, 0, 0}, ngNanos[88:102], []byte{0, 0, 32, 0, 0, 0})
	tests := []struct {
		name string
		file []byte
		pkts int
		want string // in the error; "" for a clean end
	}{
		{"the fixture", ngNanos, 1, ""},
		{"big-endian", bigEndian(), 1, ""},
		{"snap length 2^32-1", with(ngNanos, func(b []byte) { le.PutUint32(b[40:], 0xffffffff) }), 1, ""},
		{"snap length 2^32-1, big-endian", with(bigEndian(), func(b []byte) { be.PutUint32(b[40:], 0xffffffff) }), 1, ""},
		{"captured length beyond its block", with(ngNanos, func(b []byte) { le.PutUint32(b[80:], 0xfffffff0) }), 0,
			"packet 1: pcapng block at byte 60: a captured length of 4294967280 bytes does not fit its block of 48"},
		{"block and captured length beyond the file", with(ngNanos, func(b []byte) {
			le.PutUint32(b[64:], 0xfffffff0)
			le.PutUint32(b[80:], 0xffffff00)
		}), 0, "packet 1: truncated record: unexpected EOF"},
		{"block shorter than its header", with(ngNanos, func(b []byte) { le.PutUint32(b[64:], 8) }), 0,
			"packet 1: pcapng block at byte 60 declares 8 bytes, less than its own header and trailer"},
		{"simple packet", slices.Concat(ngNanos[:60], spb), 1, ""},
		{"simple packet of 2^32-1 bytes, snap length 0", with(slices.Concat(ngNanos[:60], spb), func(b []byte) {
			le.PutUint32(b[40:], 0)
			le.PutUint32(b[68:], 0xffffffff)
		}), 0, "does not fit its block of 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkts, err, allocated := replayAll(t, tt.file)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			case err != nil && errors.Is(err, io.EOF):
				t.Fatalf("error %v wraps io.EOF: the engine would take it for a clean end", err)
			}
			if pkts != tt.pkts {
				t.Errorf("%d packets delivered, want %d", pkts, tt.pkts)
			}
			if allocated > 16<<20 {
				t.Errorf("%d bytes allocated", allocated)
			}
		})
	}
}
