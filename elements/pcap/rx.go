// Package pcap holds RxPcap and TxPcap, the capture-file source and sink
// xlb uses for offline runs, soak tests and golden-output tests. They read
// the classic libpcap format and pcapng (IETF drafts
// draft-ietf-opsawg-pcap and draft-ietf-opsawg-pcapng) and write classic
// pcap with nanosecond timestamps, through gopacket/pcapgo; only Ethernet
// captures (LINKTYPE_ETHERNET) are accepted, matching the frames AF_XDP
// delivers.
package pcap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/xlbproject/xlb/pipeline"
)

// MaxSnapLen is the largest captured packet RxPcap delivers: a 9000-byte
// jumbo frame and its Ethernet header fit. Larger records are skipped and
// counted (xlb_pcap_oversize_total).
const MaxSnapLen = 9216

// maxCaptureLen is libpcap's MAXIMUM_SNAPLEN. Classic pcap records up to
// this length are accepted whatever the file header's snap length says, as
// libpcap and tcpdump do (some writers exceed their own snap length); it
// also bounds pcapgo's read buffer, which it sizes from the snap length.
const maxCaptureLen = 262144

const frameSize = pipeline.Headroom + MaxSnapLen

// pcapngMagic is the block type of a pcapng Section Header Block, a
// palindrome, so the same in either byte order.
const pcapngMagic = "\x0a\x0d\x0d\x0a"

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:    "RxPcap",
		Doc:     "Reads Ethernet packets from a pcap or pcapng file, replaying it `repeat` times.",
		Outputs: []string{"out"},
		New:     func() pipeline.Element { return &RxPcap{Repeat: 1} },
	})
}

// RxPcap is a source that replays a capture file. Each packet's Time is its
// capture timestamp and each batch's Now the timestamp of its last packet,
// so timers downstream run on capture time.
type RxPcap struct {
	File   string `hcl:"file" doc:"the pcap or pcapng file to read, relative to the configuration file's directory"`
	Repeat int    `hcl:"repeat,optional" doc:"how many times the file is replayed"`

	f  *os.File
	br *bufio.Reader // over f, reused by every pass's pcapgo reader
	// src reads the current pass: a *pcapgo.Reader or *pcapgo.NgReader
	// over br. ng is src when the file is pcapng (for error messages).
	src gopacket.ZeroCopyPacketDataSource
	ng  *pcapgo.NgReader

	worker  int
	workers int
	index   uint64 // packets read so far, across repeats: selects the worker
	pos     int    // packets read in the current pass, for error messages
	pass    int    // completed passes over the file
	done    bool
	err     error // a read error, returned after the packets read before it

	// Packets and frames are allocated once in Provision and reused for
	// every batch: the engine runs a batch to completion (every packet
	// written, transmitted or dropped) before it calls Pull again, so no
	// packet outlives its batch.
	pkts   [pipeline.MaxBatch]pipeline.Packet
	frames []byte
	// spares are lent to elements that emit more packets than they
	// receive (pipeline.FrameSupplier), for one batch like the frames.
	spares *pipeline.SparePool

	oversize atomic.Uint64
}

// Validate checks the configuration.
func (r *RxPcap) Validate() error {
	if r.File == "" {
		return &pipeline.AttrError{Attr: "file", Msg: "must name a capture file"}
	}
	if r.Repeat < 1 {
		return &pipeline.AttrError{Attr: "repeat", Msg: "must be at least 1"}
	}
	return nil
}

// Provision opens the file (each worker its own reader), checks its link
// type and allocates the frames.
func (r *RxPcap) Provision(ctx *pipeline.Context) error {
	f, err := os.Open(r.File)
	if err != nil {
		return err
	}
	r.f, r.br = f, bufio.NewReaderSize(f, 1<<20)
	if err := r.open(); err != nil {
		r.f, r.br = nil, nil
		f.Close()
		return fmt.Errorf("%s: %w", r.File, err)
	}
	// With several workers, worker k takes the packets whose index i in the
	// file satisfies i % workers == k, so that every packet is processed
	// exactly once. Spreading one flow over workers is acceptable offline:
	// Maglev selection is a pure function of the flow hash and the
	// snapshot, so every worker picks the same backend for a flow; only
	// the per-worker conntrack tables see partial flows, which changes
	// hit/miss counts but not where packets go.
	r.worker, r.workers = ctx.Worker, max(ctx.Workers, 1)
	r.frames = make([]byte, pipeline.MaxBatch*frameSize)
	r.spares = pipeline.NewSparePool(frameSize)
	return nil
}

// open starts a pass: it reads the file from the beginning with a new
// pcapgo reader (pcapgo readers cannot rewind) and checks the link type.
func (r *RxPcap) open() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = pcapgoPanic(v)
		}
	}()
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.f)
	magic, err := r.br.Peek(4)
	if err != nil {
		return fmt.Errorf("not a capture file: %w", noEOF(err))
	}
	var lt layers.LinkType
	if string(magic) == pcapngMagic {
		// pcapgo fails on a packet from an interface whose link type is
		// not the first interface's (Ethernet, checked below) rather than
		// silently skipping it as libpcap does. It reads through a guard
		// of its allocations (ngGuard), in a buffer of its own.
		fi, err := r.f.Stat()
		if err != nil {
			return err
		}
		ng, err := pcapgo.NewNgReader(newNgGuard(r.br, fi.Size()), pcapgo.NgReaderOptions{ErrorOnMismatchingLinkType: true})
		if err != nil {
			return fmt.Errorf("reading pcapng header: %w", noEOF(err))
		}
		r.src, r.ng, lt = ng, ng, ng.LinkType()
	} else {
		// pcapgo also accepts gzip-compressed pcap. It reads br directly
		// (bufio.NewReader returns a large enough *bufio.Reader
		// unchanged), so no buffer is added per pass.
		rd, err := pcapgo.NewReader(r.br)
		if err != nil {
			return fmt.Errorf("reading pcap header: %w", noEOF(err))
		}
		rd.SetSnaplen(maxCaptureLen)
		r.src, r.ng, lt = rd, nil, rd.LinkType()
	}
	if lt != layers.LinkTypeEthernet {
		return linkTypeError(lt)
	}
	return nil
}

// linkTypeError reports a non-Ethernet capture. pcapgo truncates link
// types to 8 bits (layers.LinkType is a uint8), so a link type above 255
// is reported modulo 256.
func linkTypeError(lt layers.LinkType) error {
	name := ""
	if s := lt.String(); !strings.HasPrefix(s, "Unknown") {
		name = " (" + s + ")"
	}
	return fmt.Errorf("link type %d%s is not supported: xlb reads Ethernet captures only (link type 1)", lt, name)
}

// pcapgoPanic turns a panic in pcapgo, recovered as v, into an error:
// pcapgo v1.1.19 divides by zero on a pcapng interface whose if_tsresol is
// 2^-64 or 10^-64 or finer, and a malformed file must not crash the
// process. Other panics (bugs here) are not ours to hide and go on.
func pcapgoPanic(v any) error {
	if !bytes.Contains(debug.Stack(), []byte("github.com/google/gopacket/pcapgo.")) {
		panic(v)
	}
	return fmt.Errorf("malformed capture (pcapgo: %v)", v)
}

// Pull fills b with up to MaxBatch packets and returns io.EOF once the
// file has been replayed Repeat times.
func (r *RxPcap) Pull(b *pipeline.Batch) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = r.fail(b, fmt.Errorf("%s: packet %d: %w", r.File, r.pos+1, pcapgoPanic(v)))
		}
	}()
	r.spares.Reset()
	if r.err != nil {
		return r.err
	}
	if r.done {
		return io.EOF
	}
	for b.N < pipeline.MaxBatch {
		data, ci, err := r.src.ZeroCopyReadPacketData()
		// pcapgo returns a bare io.EOF both at the end of the file and
		// when a record's data is cut short after its header; only the
		// latter has a capture length.
		if err == io.EOF && ci.CaptureLength == 0 {
			if r.pass++; r.pass < r.Repeat {
				if err := r.open(); err != nil {
					return r.fail(b, fmt.Errorf("%s: reopening for repeat: %w", r.File, err))
				}
				r.pos = 0
				continue
			}
			r.done = true
			break
		}
		if err != nil {
			return r.fail(b, fmt.Errorf("%s: packet %d: %w", r.File, r.pos+1, r.explain(err)))
		}
		mine := r.index%uint64(r.workers) == uint64(r.worker)
		r.index++
		r.pos++
		if !mine {
			continue
		}
		if len(data) > MaxSnapLen {
			r.oversize.Add(1)
			continue
		}
		var ts int64
		if !ci.Timestamp.IsZero() { // pcapng Simple Packet Blocks have no time
			ts = ci.Timestamp.UnixNano()
		}
		frame := r.frames[b.N*frameSize : (b.N+1)*frameSize]
		n := copy(frame[pipeline.Headroom:], data)
		p := &r.pkts[b.N]
		p.SetFrame(frame, pipeline.Headroom, pipeline.Headroom+n)
		p.Time = ts
		b.Add(p, 0)
		b.Now = ts
	}
	if b.N == 0 && r.done {
		return io.EOF
	}
	return nil
}

// fail keeps err for every later Pull and returns it now, unless b holds
// packets: those are delivered first.
func (r *RxPcap) fail(b *pipeline.Batch, err error) error {
	r.err = err
	if b.N > 0 {
		return nil
	}
	return err
}

// explain makes a pcapgo read error say what went wrong. A truncated
// record must not end the run as a clean end of file would (the engine
// stops a source on any error wrapping io.EOF).
func (r *RxPcap) explain(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated record: %w", io.ErrUnexpectedEOF)
	}
	if errors.Is(err, pcapgo.ErrNgLinkTypeMismatch) && r.ng != nil {
		for i := range r.ng.NInterfaces() {
			if ifc, _ := r.ng.Interface(i); ifc.LinkType != layers.LinkTypeEthernet {
				return fmt.Errorf("interface %d: %w", i, linkTypeError(ifc.LinkType))
			}
		}
	}
	return err
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Stats reports packets skipped for not fitting a frame.
func (r *RxPcap) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_pcap_oversize_total",
		Help:  "Captured packets longer than the frame size, skipped.",
		Value: r.oversize.Load()})
}

// Spare lends an empty packet for the current batch, or nil when its
// MaxBatch spares are lent.
func (r *RxPcap) Spare() *pipeline.Packet { return r.spares.Spare() }

// Cleanup closes the file.
func (r *RxPcap) Cleanup() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f, r.br, r.src, r.ng = nil, nil, nil, nil
	return err
}

var (
	_ pipeline.Source        = (*RxPcap)(nil)
	_ pipeline.Validator     = (*RxPcap)(nil)
	_ pipeline.Provisioner   = (*RxPcap)(nil)
	_ pipeline.Cleaner       = (*RxPcap)(nil)
	_ pipeline.StatsReporter = (*RxPcap)(nil)
	_ pipeline.FrameSupplier = (*RxPcap)(nil)
)
