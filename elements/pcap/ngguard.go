package pcap

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
)

// pcapng block types whose lengths size pcapgo's packet buffer.
const (
	ngSectionHeader  = 0x0a0d0d0a
	ngInterface      = 1
	ngObsoletePacket = 2
	ngSimplePacket   = 3
	ngEnhancedPacket = 6
	ngByteOrderMagic = 0x1a2b3c4d
)

// ngGuard passes a pcapng file to pcapgo's NgReader, checking each
// block's header before the block's first byte goes through. pcapgo sizes
// its packet buffer from what the file declares before it reads a packet:
// the larger of the packet's interface's snap length and the packet's
// captured length, which it never checks against its block. A corrupt
// file could so make it allocate up to 4 GiB, which a worker or a fuzzer
// cannot always have. Through the guard:
//   - an interface's snap length above maxCaptureLen reaches pcapgo as
//     maxCaptureLen, as RxPcap sets classic pcap's (a longer packet is
//     longer than any frame anyway, and skipped as oversize);
//   - a packet whose captured length does not fit its block is an error
//     naming the block, and one that does not fit in what is left of the
//     file is a truncated record, as pcapgo reports a packet cut short.
//
// pcapgo's allocations are then bounded by maxCaptureLen or the file's
// size. A header the file cuts short goes through unchecked: pcapgo
// reports it.
type ngGuard struct {
	r    *bufio.Reader
	off  int64 // bytes passed on
	size int64 // the file's
	next int64 // where the next block's header starts
	big  bool  // the current section's byte order
	// snapAt is where the snap length that the guard lowers starts, -1
	// when none; ifaces counts the section's interfaces and snap0 is the
	// first one's snap length as pcapgo sees it, which caps a simple
	// packet's captured length.
	snapAt int64
	ifaces int
	snap0  uint32
	err    error
}

func newNgGuard(r *bufio.Reader, size int64) *ngGuard {
	return &ngGuard{r: r, size: size, snapAt: -1}
}

func (g *ngGuard) u32(b []byte) uint32 {
	if g.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (g *ngGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	if g.off == g.next {
		if g.err = g.check(); g.err != nil {
			return 0, g.err
		}
	}
	if rest := g.next - g.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := g.r.Read(p)
	if g.snapAt >= 0 && g.snapAt < g.off+int64(n) {
		// The snap length's 4 bytes may come in more than one read.
		var lowered [4]byte
		if g.big {
			binary.BigEndian.PutUint32(lowered[:], maxCaptureLen)
		} else {
			binary.LittleEndian.PutUint32(lowered[:], maxCaptureLen)
		}
		for i := range 4 {
			if k := g.snapAt + int64(i) - g.off; k >= 0 && k < int64(n) {
				p[k] = lowered[i]
			}
		}
		if g.snapAt+4 <= g.off+int64(n) {
			g.snapAt = -1
		}
	}
	g.off += int64(n)
	return n, err
}

// check reads the header of the block at g.off (without consuming it)
// and sets where the block ends.
func (g *ngGuard) check() error {
	// Type and length, then the first 20 bytes of an Enhanced Packet
	// Block's body, the longest header read here.
	h, _ := g.r.Peek(28)
	g.next = math.MaxInt64 // what cannot be checked goes through
	if len(h) < 8 {
		return nil
	}
	typ := binary.LittleEndian.Uint32(h) // the same either way for a section header
	if typ == ngSectionHeader {
		if len(h) < 12 {
			return nil
		}
		switch {
		case binary.BigEndian.Uint32(h[8:]) == ngByteOrderMagic:
			g.big = true
		case binary.LittleEndian.Uint32(h[8:]) == ngByteOrderMagic:
			g.big = false
		default:
			return nil // pcapgo says what is wrong
		}
		g.ifaces, g.snap0 = 0, 0
	} else {
		typ = g.u32(h)
	}
	length := g.u32(h[4:])
	if length < 12 {
		return fmt.Errorf("pcapng block at byte %d declares %d bytes, less than its own header and trailer", g.off, length)
	}
	g.next = g.off + int64(length)
	left := g.size - g.off
	// fits checks a packet's captured length: in its block, after the
	// block's hdr bytes before the data and its 4-byte trailer, and in
	// the rest of the file.
	fits := func(capLen uint32, hdr int64) error {
		switch {
		case int64(capLen) > int64(length)-hdr-4:
			return fmt.Errorf("pcapng block at byte %d: a captured length of %d bytes does not fit its block of %d", g.off, capLen, length)
		case int64(capLen) > left-hdr:
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	switch typ {
	case ngInterface:
		if len(h) < 16 {
			return nil
		}
		snap := g.u32(h[12:])
		if snap > maxCaptureLen {
			g.snapAt, snap = g.off+12, maxCaptureLen
		}
		if g.ifaces++; g.ifaces == 1 {
			g.snap0 = snap
		}
	case ngEnhancedPacket, ngObsoletePacket:
		if len(h) < 24 {
			return nil
		}
		return fits(g.u32(h[20:]), 28)
	case ngSimplePacket:
		if len(h) < 12 {
			return nil
		}
		capLen := g.u32(h[8:])
		if g.snap0 != 0 {
			capLen = min(capLen, g.snap0)
		}
		return fits(capLen, 12)
	}
	return nil
}
