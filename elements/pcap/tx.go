package pcap

import (
	"bufio"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/xlbproject/xlb/pipeline"
)

func init() {
	pipeline.Register(pipeline.ElementType{
		Name:   "TxPcap",
		Doc:    "Writes packets to a classic pcap file (Ethernet, nanosecond timestamps).",
		Inputs: []string{"in"},
		New:    func() pipeline.Element { return &TxPcap{SnapLen: 65535} },
	})
}

// stageSize is each worker's initial staging buffer: a batch of 64
// packets up to 4 KiB each fits. A larger batch grows it, once.
const stageSize = 256 << 10

// TxPcap is a sink that writes every packet it receives to a pcap file,
// with the packet's Time as its timestamp.
//
// All workers write one file: each worker's pcapgo.Writer writes a batch's
// records into the worker's staging buffer, appended to a shared buffered
// writer under its mutex in EndBatch, so the per-packet path takes no lock
// and a batch's records stay together. Records of different workers interleave by batch, so timestamps in the
// file are not monotonic when workers > 1. The buffered writer is flushed
// when it fills and at Cleanup, not per batch (a write per batch would
// dominate offline runs); the file is complete once every worker has been
// cleaned up.
type TxPcap struct {
	File    string `hcl:"file" doc:"the pcap file to write, relative to the configuration file's directory"`
	SnapLen int    `hcl:"snaplen,optional" doc:"bytes of each packet written"`

	sw    *sharedWriter
	stage stage          // records of the current batch
	pw    *pcapgo.Writer // writes records (not the file header) to stage
	err   error          // first record error, handed to sw in flushStage

	nPkts, nBytes uint64 // this batch, published in EndBatch
	pkts, bytes   atomic.Uint64
}

// sharedWriter is the one open file of a run, shared by every worker's
// TxPcap writing it (pipeline.Context.Shared).
type sharedWriter struct {
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	err  error // the first open or write error; later writes are skipped
	refs int   // provisioned TxPcaps; the last Cleanup closes the file
}

type sharedKey struct{ file string }

// stage is an io.Writer appending to a byte slice that is emptied, not
// freed, after each batch.
type stage struct{ b []byte }

func (s *stage) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

// Validate checks the configuration.
func (t *TxPcap) Validate() error {
	if t.File == "" {
		return &pipeline.AttrError{Attr: "file", Msg: "must name the output file"}
	}
	if t.SnapLen < 1 || t.SnapLen > maxCaptureLen {
		return &pipeline.AttrError{Attr: "snaplen", Msg: "must be between 1 and 262144"}
	}
	return nil
}

// Provision creates the file (once per run, whichever worker comes first)
// and the worker's staging buffer.
func (t *TxPcap) Provision(ctx *pipeline.Context) error {
	sw := ctx.Shared(sharedKey{t.File}, func() any {
		sw := &sharedWriter{}
		sw.f, sw.err = os.Create(t.File)
		if sw.err == nil {
			sw.w = bufio.NewWriterSize(sw.f, 1<<20)
			sw.err = pcapgo.NewWriterNanos(sw.w).WriteFileHeader(uint32(t.SnapLen), layers.LinkTypeEthernet)
		}
		return sw
	}).(*sharedWriter)
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.err != nil {
		return sw.err
	}
	sw.refs++
	t.sw = sw
	t.stage.b = make([]byte, 0, stageSize)
	t.pw = pcapgo.NewWriterNanos(&t.stage)
	return nil
}

// Push stages the packet's record and recycles the packet.
func (t *TxPcap) Push(_ int, p *pipeline.Packet) int {
	data := p.Data()
	n := min(len(data), t.SnapLen)
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.Time), CaptureLength: n, Length: len(data)}
	// WritePacket fails only if its writer does or the lengths disagree;
	// neither can happen here, but the error is kept, not dropped.
	if err := t.pw.WritePacket(ci, data[:n]); err != nil && t.err == nil {
		t.err = err
	}
	t.nPkts++
	t.nBytes += uint64(n)
	p.Recycle()
	return pipeline.Consumed
}

func (t *TxPcap) flushStage() {
	if len(t.stage.b) == 0 && t.err == nil {
		return
	}
	sw := t.sw
	sw.mu.Lock()
	if sw.err == nil {
		sw.err = t.err
	}
	if sw.err == nil {
		_, sw.err = sw.w.Write(t.stage.b)
	}
	sw.mu.Unlock()
	t.stage.b = t.stage.b[:0]
}

// EndBatch hands the batch's records to the shared writer and publishes
// the counters.
func (t *TxPcap) EndBatch() {
	t.flushStage()
	if t.nPkts > 0 {
		t.pkts.Add(t.nPkts)
		t.bytes.Add(t.nBytes)
		t.nPkts, t.nBytes = 0, 0
	}
}

// Stats reports what this worker wrote.
func (t *TxPcap) Stats(emit func(pipeline.Metric)) {
	emit(pipeline.Metric{Name: "xlb_pcap_written_packets_total", Help: "Packets written to the capture file.", Value: t.pkts.Load()})
	emit(pipeline.Metric{Name: "xlb_pcap_written_bytes_total", Help: "Captured bytes written to the capture file (record headers excluded).", Value: t.bytes.Load()})
}

// Cleanup flushes what this worker wrote; the last worker closes the file
// and reports the first write error of the run, once.
func (t *TxPcap) Cleanup() error {
	sw := t.sw
	if sw == nil {
		return nil
	}
	t.flushStage()
	t.sw = nil
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.refs--; sw.refs > 0 {
		return nil
	}
	if err := sw.f.Close(); sw.err == nil {
		sw.err = err
	}
	if sw.err != nil {
		return fmt.Errorf("writing %s: %w", t.File, sw.err)
	}
	return nil
}

var (
	_ pipeline.Pusher        = (*TxPcap)(nil)
	_ pipeline.Validator     = (*TxPcap)(nil)
	_ pipeline.Provisioner   = (*TxPcap)(nil)
	_ pipeline.BatchEnder    = (*TxPcap)(nil)
	_ pipeline.Cleaner       = (*TxPcap)(nil)
	_ pipeline.StatsReporter = (*TxPcap)(nil)
)
