package pcap

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	_ "github.com/xlbproject/xlb/elements/basic" // registers Counter
	"github.com/xlbproject/xlb/pipeline"
)

// classicLE is a little-endian, microsecond pcap file with one 14-byte
// packet, written out field by field.
var classicLE = []byte{
	// file header
	0xd4, 0xc3, 0xb2, 0xa1, // magic 0xa1b2c3d4 (microseconds), little-endian
	0x02, 0x00, 0x04, 0x00, // version 2.4
	0x00, 0x00, 0x00, 0x00, // thiszone 0
	0x00, 0x00, 0x00, 0x00, // sigfigs 0
	0xff, 0xff, 0x00, 0x00, // snaplen 65535
	0x01, 0x00, 0x00, 0x00, // link type 1 (Ethernet)
	// record header
	0x00, 0xb9, 0x55, 0x69, // ts_sec 0x6955b900 (2026-01-01T00:00:00Z)
	0x40, 0xe2, 0x01, 0x00, // ts_usec 123456
	0x0e, 0x00, 0x00, 0x00, // incl_len 14
	0x3c, 0x00, 0x00, 0x00, // orig_len 60
	// Ethernet header: dst, src, type 0x0800
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
}

// tsClassicLE is classicLE's timestamp: 0x6955b900 s + 123456 µs.
const tsClassicLE = 0x6955b900*1_000_000_000 + 123456*1000

// ngNanos is a little-endian pcapng file: a section header, an Ethernet
// interface with nanosecond timestamps, and one Enhanced Packet Block.
var ngNanos = []byte{
	// Section Header Block, bytes 0-27
	0x0a, 0x0d, 0x0d, 0x0a, // block type
	0x1c, 0x00, 0x00, 0x00, // block length 28
	0x4d, 0x3c, 0x2b, 0x1a, // byte-order magic 0x1a2b3c4d, little-endian
	0x01, 0x00, 0x00, 0x00, // version 1.0
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // section length -1 (unknown)
	0x1c, 0x00, 0x00, 0x00, // block length 28
	// Interface Description Block, bytes 28-59
	0x01, 0x00, 0x00, 0x00, // block type 1
	0x20, 0x00, 0x00, 0x00, // block length 32
	0x01, 0x00, 0x00, 0x00, // link type 1 (Ethernet), reserved
	0x00, 0x00, 0x04, 0x00, // snaplen 262144
	0x09, 0x00, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, // if_tsresol (byte 48): 10^-9, padded
	0x00, 0x00, 0x00, 0x00, // opt_endofopt
	0x20, 0x00, 0x00, 0x00, // block length 32
	// Enhanced Packet Block, bytes 60-107
	0x06, 0x00, 0x00, 0x00, // block type 6
	0x30, 0x00, 0x00, 0x00, // block length 48
	0x00, 0x00, 0x00, 0x00, // interface 0
	0x00, 0x00, 0x00, 0x00, // timestamp high
	0x15, 0xcd, 0x5b, 0x07, // timestamp low: 123456789 ns
	0x0e, 0x00, 0x00, 0x00, // captured length 14
	0x0e, 0x00, 0x00, 0x00, // original length 14
	0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x86, 0xdd, // bytes 88-101: Ethernet, IPv6
	0x00, 0x00, // padding to 32 bits
	0x30, 0x00, 0x00, 0x00, // block length 48
}

// ngTsresol returns ngNanos with its interface's if_tsresol set to v.
func ngTsresol(v byte) []byte {
	b := bytes.Clone(ngNanos)
	b[48] = v
	return b
}

// ngLaterTsresol is ngNanos followed by a copy of its interface with
// if_tsresol set to v and a copy of its packet on that interface 1.
func ngLaterTsresol(v byte) []byte {
	epb := bytes.Clone(ngNanos[60:])
	epb[8] = 1 // interface ID
	return slices.Concat(ngNanos, ngTsresol(v)[28:60], epb)
}

type rec struct {
	ts   int64
	data []byte
}

// pkt is a 60+i byte Ethernet frame filled with i.
func pkt(i int) []byte {
	b := []byte{0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00}
	return append(b, bytes.Repeat([]byte{byte(i)}, 46+i)...)
}

func ci(r rec) gopacket.CaptureInfo {
	return gopacket.CaptureInfo{Timestamp: time.Unix(0, r.ts), CaptureLength: len(r.data), Length: len(r.data)}
}

// classicFile is a classic pcap file of recs, written by pcapgo with
// nanosecond or microsecond timestamps.
func classicFile(t testing.TB, link layers.LinkType, nanos bool, recs ...rec) []byte {
	t.Helper()
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if nanos {
		w = pcapgo.NewWriterNanos(&b)
	}
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.WritePacket(ci(r), r.data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// ngFile is a pcapng file with one interface per link type, written by
// pcapgo; recs[i] is captured on interface ifc[i] (0 if ifc is short).
func ngFile(t testing.TB, links []layers.LinkType, ifc []int, recs ...rec) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{LinkType: links[0]}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links[1:] {
		if _, err := w.AddInterface(pcapgo.NgInterface{LinkType: l}); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range recs {
		c := ci(r)
		if i < len(ifc) {
			c.InterfaceIndex = ifc[i]
		}
		if err := w.WritePacket(c, r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "in.pcap")
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// readOutput checks the header TxPcap writes (little-endian, nanosecond
// magic, Ethernet, snaplen) and returns the file's records, read by pcapgo.
func readOutput(t *testing.T, name string, snaplen uint32) []rec {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint32(b) != 0xa1b23c4d || le.Uint32(b[16:]) != snaplen || le.Uint32(b[20:]) != 1 {
		t.Fatalf("bad output header % x", b[:min(len(b), 24)])
	}
	rd, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	for {
		data, ci, err := rd.ReadPacketData()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("record %d: %v", len(out)+1, err)
		}
		if ci.CaptureLength != ci.Length && ci.CaptureLength != int(snaplen) {
			t.Fatalf("record %d: caplen %d, origlen %d", len(out)+1, ci.CaptureLength, ci.Length)
		}
		out = append(out, rec{ci.Timestamp.UnixNano(), data})
	}
}

// spec is rx :: RxPcap -> cnt :: Counter -> tx :: TxPcap.
func spec(in, out string, repeat int) pipeline.Spec {
	return pipeline.Spec{
		Elements: []pipeline.ElementDecl{
			{Name: "rx", Type: "RxPcap", Configure: func(e pipeline.Element) error {
				e.(*RxPcap).File, e.(*RxPcap).Repeat = in, repeat
				return nil
			}},
			{Name: "cnt", Type: "Counter"},
			{Name: "tx", Type: "TxPcap", Configure: func(e pipeline.Element) error {
				e.(*TxPcap).File = out
				return nil
			}},
		},
		Connections: []pipeline.Connection{
			{From: pipeline.Endpoint{Element: "rx"}, To: pipeline.Endpoint{Element: "cnt"}},
			{From: pipeline.Endpoint{Element: "cnt"}, To: pipeline.Endpoint{Element: "tx"}},
		},
	}
}

// runErr builds and runs the graph to the end of the input and returns the
// elements' metrics by element name and metric name, and Run's error.
func runErr(t *testing.T, s pipeline.Spec, workers int) (map[string]map[string]uint64, error) {
	t.Helper()
	g, errs := pipeline.Build(s)
	if errs != nil {
		t.Fatal(errs)
	}
	rt, err := g.Start(pipeline.Options{Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	runErr := rt.Run(context.Background())
	stats := rt.Stats()
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	m := map[string]map[string]uint64{}
	for _, es := range stats {
		m[es.Name] = map[string]uint64{}
		for _, x := range es.Metrics {
			m[es.Name][x.Name] = x.Value
		}
	}
	return m, runErr
}

func run(t *testing.T, s pipeline.Spec, workers int) map[string]map[string]uint64 {
	t.Helper()
	m, err := runErr(t, s, workers)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRoundTrip copies captures of each input format through
// RxPcap -> Counter -> TxPcap and checks every packet and timestamp.
func TestRoundTrip(t *testing.T) {
	var recs []rec
	for i := range 150 { // more than two batches
		recs = append(recs, rec{1767225600e9 + int64(i)*1_000_123, pkt(i % 100)})
	}
	micros := make([]rec, len(recs))
	for i, r := range recs {
		micros[i] = rec{r.ts - r.ts%1000, r.data} // what a µs file can hold
	}
	eth, ipv6 := classicLE[40:], ngNanos[88:102]
	tests := []struct {
		name   string
		file   []byte
		repeat int
		want   []rec // one pass
	}{
		{"classic fixture", classicLE, 1, []rec{{tsClassicLE, eth}}},
		{"pcapng fixture", ngNanos, 1, []rec{{123456789, ipv6}}},
		{"classic nanoseconds", classicFile(t, layers.LinkTypeEthernet, true, recs...), 1, recs},
		{"classic microseconds, repeated", classicFile(t, layers.LinkTypeEthernet, false, recs...), 2, micros},
		{"classic gzip, repeated", gzipped(t, classicFile(t, layers.LinkTypeEthernet, true, recs...)), 2, recs},
		{"pcapng, repeated", ngFile(t, []layers.LinkType{layers.LinkTypeEthernet}, nil, recs...), 3, recs},
		{"pcapng two Ethernet interfaces", ngFile(t, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeEthernet}, []int{1, 0, 1}, recs[:3]...), 1, recs[:3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []rec
			size := 0
			for range tt.repeat {
				want = append(want, tt.want...)
				for _, r := range tt.want {
					size += len(r.data)
				}
			}
			in := writeFile(t, tt.file)
			out := filepath.Join(t.TempDir(), "out.pcap")
			m := run(t, spec(in, out, tt.repeat), 1)
			got := readOutput(t, out, 65535)
			if len(got) != len(want) {
				t.Fatalf("wrote %d packets, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].ts != want[i].ts || !bytes.Equal(got[i].data, want[i].data) {
					t.Fatalf("packet %d: ts %d, want %d; data equal %v", i, got[i].ts, want[i].ts, bytes.Equal(got[i].data, want[i].data))
				}
			}
			n := uint64(len(want))
			if c := m["cnt"]; c["xlb_counter_packets_total"] != n || c["xlb_counter_bytes_total"] != uint64(size) {
				t.Errorf("counter = %v, want %d packets, %d bytes", c, n, size)
			}
			if c := m["tx"]; c["xlb_pcap_written_packets_total"] != n || c["xlb_pcap_written_bytes_total"] != uint64(size) {
				t.Errorf("tx = %v, want %d packets, %d bytes", c, n, size)
			}
		})
	}
}

// TestWorkersShard runs several workers over one file into one output:
// every input packet must be written exactly once per pass.
func TestWorkersShard(t *testing.T) {
	const n = 1000
	var recs []rec
	for i := range n {
		d := pkt(0)
		binary.BigEndian.PutUint32(d[14:], uint32(i)) // a unique id per packet
		recs = append(recs, rec{int64(i), d})
	}
	in := writeFile(t, classicFile(t, layers.LinkTypeEthernet, true, recs...))
	for _, workers := range []int{2, 3, 7} {
		out := filepath.Join(t.TempDir(), "out.pcap")
		m := run(t, spec(in, out, 2), workers)
		seen := make([]int, n)
		for _, r := range readOutput(t, out, 65535) {
			id := binary.BigEndian.Uint32(r.data[14:])
			if int64(id) != r.ts {
				t.Fatalf("packet %d has timestamp %d", id, r.ts)
			}
			seen[id]++
		}
		for id, c := range seen {
			if c != 2 { // repeat = 2
				t.Fatalf("workers=%d: packet %d written %d times, want 2", workers, id, c)
			}
		}
		if got := m["cnt"]["xlb_counter_packets_total"]; got != 2*n {
			t.Errorf("workers=%d: counted %d packets, want %d", workers, got, 2*n)
		}
	}
}

func TestOversize(t *testing.T) {
	big := append(pkt(0), make([]byte, MaxSnapLen)...)
	for name, file := range map[string][]byte{
		"classic": classicFile(t, layers.LinkTypeEthernet, true, rec{1, pkt(1)}, rec{2, big}, rec{3, pkt(3)}),
		"pcapng":  ngFile(t, []layers.LinkType{layers.LinkTypeEthernet}, nil, rec{1, pkt(1)}, rec{2, big}, rec{3, pkt(3)}),
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcap")
			m := run(t, spec(writeFile(t, file), out, 1), 1)
			if got := m["rx"]["xlb_pcap_oversize_total"]; got != 1 {
				t.Errorf("oversize = %d, want 1", got)
			}
			if got := readOutput(t, out, 65535); len(got) != 2 || got[0].ts != 1 || got[1].ts != 3 {
				t.Errorf("wrote %d packets, want the two that fit", len(got))
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	raw := writeFile(t, classicFile(t, layers.LinkTypeRaw, false))
	ngSLL := writeFile(t, ngFile(t, []layers.LinkType{layers.LinkTypeLinuxSLL}, nil))
	gif := writeFile(t, []byte("GIF89a................................"))
	empty := writeFile(t, nil)
	eth := writeFile(t, classicLE)
	tests := []struct {
		name    string
		in, out string
		want    string
	}{
		{"missing input", filepath.Join(dir, "nope.pcap"), filepath.Join(dir, "o.pcap"),
			"while configuring `rx` (RxPcap): open " + filepath.Join(dir, "nope.pcap") + ": no such file or directory"},
		{"non-Ethernet input", raw, filepath.Join(dir, "o.pcap"),
			"while configuring `rx` (RxPcap): " + raw + ": link type 101 (Raw) is not supported: xlb reads Ethernet captures only (link type 1)"},
		{"non-Ethernet pcapng input", ngSLL, filepath.Join(dir, "o.pcap"),
			ngSLL + ": link type 113 (Linux SLL) is not supported"},
		{"not a capture", gif, filepath.Join(dir, "o.pcap"), gif + ": reading pcap header: Unknown magic"},
		{"empty input", empty, filepath.Join(dir, "o.pcap"), empty + ": not a capture file: unexpected EOF"},
		{"truncated pcapng header", writeFile(t, ngNanos[:40]), filepath.Join(dir, "o.pcap"), "reading pcapng header: unexpected EOF"},
		{"pcapng timestamp resolution 2^-64", writeFile(t, ngTsresol(0x80|64)), filepath.Join(dir, "o.pcap"),
			"malformed capture (pcapgo: runtime error: integer divide by zero)"},
		{"output directory missing", eth, filepath.Join(dir, "no", "o.pcap"),
			"while configuring `tx` (TxPcap): open " + filepath.Join(dir, "no", "o.pcap")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, errs := pipeline.Build(spec(tt.in, tt.out, 1))
			if errs != nil {
				t.Fatal(errs)
			}
			rt, err := g.Start(pipeline.Options{Workers: 2})
			if err == nil {
				rt.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestReadErrors checks that a bad record stops the run with an error
// naming it, after the packets before it have been delivered.
func TestReadErrors(t *testing.T) {
	two := classicFile(t, layers.LinkTypeEthernet, true, rec{1, pkt(1)}, rec{2, pkt(2)})
	one := len(classicLE) // bytes of a file holding one 14-byte record
	tests := []struct {
		name   string
		file   []byte
		before uint64 // packets delivered before the error
		want   string
	}{
		{"classic data cut short", classicLE[:one-4], 0, "packet 1: truncated record: unexpected EOF"},
		{"classic data missing", classicLE[:one-14], 0, "packet 1: truncated record"},
		{"classic record header cut short", classicLE[:24+5], 0, "packet 1: truncated record"},
		{"second record cut short", two[:len(two)-5], 1, "packet 2: truncated record"},
		{"classic record beyond 256 KiB", classicFile(t, layers.LinkTypeEthernet, true, rec{1, make([]byte, maxCaptureLen+1)}), 0,
			"packet 1: capture length exceeds snap length"},
		{"pcapng data cut short", ngNanos[:95], 0, "packet 1: truncated record"},
		{"pcapng block trailer missing", ngNanos[:104], 0, "packet 1: truncated record"},
		{"pcapng later non-Ethernet interface",
			ngFile(t, []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeIPv4}, []int{0, 1}, rec{1, pkt(1)}, rec{2, pkt(2)}), 1,
			"packet 2: interface 1: link type 228 is not supported"},
		{"pcapng later interface with timestamp resolution 10^-64", ngLaterTsresol(64), 1,
			"packet 2: malformed capture (pcapgo: runtime error: integer divide by zero)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcap")
			m, err := runErr(t, spec(writeFile(t, tt.file), out, 1), 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if got := m["cnt"]["xlb_counter_packets_total"]; got != tt.before {
				t.Errorf("%d packets delivered, want %d", got, tt.before)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		el   pipeline.Validator
		attr string
	}{
		{&RxPcap{Repeat: 1}, "file"},
		{&RxPcap{File: "x", Repeat: 0}, "repeat"},
		{&RxPcap{File: "x", Repeat: 1}, ""},
		{&TxPcap{SnapLen: 65535}, "file"},
		{&TxPcap{File: "x", SnapLen: 0}, "snaplen"},
		{&TxPcap{File: "x", SnapLen: 1 << 20}, "snaplen"},
		{&TxPcap{File: "x", SnapLen: 96}, ""},
	}
	for i, tt := range tests {
		err := tt.el.Validate()
		ae, _ := err.(*pipeline.AttrError)
		switch {
		case tt.attr == "" && err != nil:
			t.Errorf("%d: unexpected error %v", i, err)
		case tt.attr != "" && (ae == nil || ae.Attr != tt.attr):
			t.Errorf("%d: error %v, want one for attribute %q", i, err, tt.attr)
		}
	}
}

func TestSnapLen(t *testing.T) {
	in := writeFile(t, classicFile(t, layers.LinkTypeEthernet, true, rec{1, pkt(50)}))
	out := filepath.Join(t.TempDir(), "out.pcap")
	s := spec(in, out, 1)
	s.Elements[2].Configure = func(e pipeline.Element) error {
		e.(*TxPcap).File, e.(*TxPcap).SnapLen = out, 20
		return nil
	}
	run(t, s, 1)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// File header (24 bytes): snaplen at 16. Record header (16 bytes):
	// incl_len at 8, orig_len at 12; then 20 bytes of data.
	if snap, caplen, orig := le.Uint32(b[16:]), le.Uint32(b[24+8:]), le.Uint32(b[24+12:]); snap != 20 || caplen != 20 || orig != uint32(len(pkt(50))) || len(b) != 24+16+20 {
		t.Errorf("snaplen %d, caplen %d, origlen %d, file %d bytes", snap, caplen, orig, len(b))
	}
	if !bytes.Equal(b[24+16:], pkt(50)[:20]) {
		t.Errorf("data % x, want the frame's first 20 bytes", b[24+16:])
	}
}

// provisioned returns an RxPcap replaying without end a file that fills
// the given number of batches (for allocation tests and benchmarks), and a
// TxPcap writing to a temp file.
func provisioned(t testing.TB, batches int) (*RxPcap, *TxPcap) {
	var recs []rec
	for i := range batches * pipeline.MaxBatch {
		recs = append(recs, rec{int64(i), pkt(i % 64)})
	}
	rx := &RxPcap{File: writeFile(t, classicFile(t, layers.LinkTypeEthernet, true, recs...)), Repeat: 1 << 30}
	tx := &TxPcap{File: filepath.Join(t.TempDir(), "out.pcap"), SnapLen: 65535}
	for _, e := range []pipeline.Provisioner{rx, tx} {
		if err := e.Provision(pipeline.NewContext("e", 0, 1, nil)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, e := range []pipeline.Cleaner{rx, tx} {
			if err := e.Cleanup(); err != nil {
				t.Error(err)
			}
		}
	})
	return rx, tx
}

func pull(t testing.TB, rx *RxPcap, b *pipeline.Batch) {
	b.Reset()
	if err := rx.Pull(b); err != nil || b.N != pipeline.MaxBatch {
		t.Fatalf("Pull: %d packets, %v", b.N, err)
	}
}

// TestNoAllocs checks the per-packet paths: Pull within a pass (the file
// holds more batches than are pulled) and TxPcap's Push and EndBatch.
func TestNoAllocs(t *testing.T) {
	rx, tx := provisioned(t, 128)
	var b pipeline.Batch
	if a := testing.AllocsPerRun(100, func() { pull(t, rx, &b) }); a != 0 {
		t.Errorf("RxPcap.Pull: %v allocs per batch, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		for _, p := range b.Pkts[:b.N] {
			tx.Push(0, p)
		}
		tx.EndBatch()
	}); a != 0 {
		t.Errorf("TxPcap.Push: %v allocs per batch, want 0", a)
	}
}

// TestRepeatAllocs bounds what starting a pass costs: a new pcapgo reader
// (the reader itself, its header buffer and its 256 KiB packet buffer).
func TestRepeatAllocs(t *testing.T) {
	rx, _ := provisioned(t, 1)
	var b pipeline.Batch
	a := testing.AllocsPerRun(100, func() { pull(t, rx, &b) }) // one pass per Pull
	t.Logf("RxPcap: %v allocs per pass", a)
	if a > 4 {
		t.Errorf("RxPcap: %v allocs per pass, want at most 4", a)
	}
}

func benchmarkPull(b *testing.B, batches int) {
	rx, _ := provisioned(b, batches)
	var batch pipeline.Batch
	b.ReportAllocs()
	for b.Loop() {
		pull(b, rx, &batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pipeline.MaxBatch), "ns/pkt")
}

// BenchmarkPull reads a 4096-packet file, a new pass every 64 batches.
func BenchmarkPull(b *testing.B) { benchmarkPull(b, 64) }

// BenchmarkPullRepeat reads a one-batch file: a new pass every batch.
func BenchmarkPullRepeat(b *testing.B) { benchmarkPull(b, 1) }

func BenchmarkTxPush(b *testing.B) {
	rx, tx := provisioned(b, 1)
	var batch pipeline.Batch
	pull(b, rx, &batch)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tx.Push(0, batch.Pkts[i%pipeline.MaxBatch])
		if i%pipeline.MaxBatch == pipeline.MaxBatch-1 {
			tx.EndBatch()
		}
	}
}

// FuzzRxPcap replays arbitrary bytes as a capture file, twice. RxPcap must
// never panic (pcapgo panics are its to contain), must deliver packets
// that fit their frames, must not report a bad file as a clean end (the
// engine treats any error wrapping io.EOF so), must end (every record
// takes at least 12 bytes, after gunzipping), and a file read cleanly once must read the
// same way on the second pass.
func FuzzRxPcap(f *testing.F) {
	f.Add(classicLE)                    // classic pcap, one packet
	f.Add(ngNanos)                      // pcapng, one EPB
	f.Add(classicLE[:len(classicLE)-4]) // truncated record data
	f.Add(ngNanos[:95])                 // truncated pcapng block
	f.Add(ngTsresol(0x80 | 64))         // if_tsresol that makes pcapgo divide by zero
	f.Add(ngLaterTsresol(0xff))         // the same on a second interface
	f.Add(gzipped(f, classicLE))        // gzip-compressed classic pcap
	f.Fuzz(func(t *testing.T, file []byte) {
		name := writeFile(t, file)
		size := len(file)
		if z, err := gzip.NewReader(bytes.NewReader(file)); err == nil {
			// pcapgo inflates gzip input: bound packets by what it holds.
			b, _ := io.ReadAll(z)
			size = len(b)
		}
		var passes [2]int // packets delivered with repeat 1 and repeat 2
		for i := range passes {
			rx := &RxPcap{File: name, Repeat: i + 1}
			if err := rx.Provision(pipeline.NewContext("rx", 0, 1, nil)); err != nil {
				return
			}
			defer rx.Cleanup()
			var b pipeline.Batch
			for {
				b.Reset()
				err := rx.Pull(&b)
				if err == io.EOF {
					break
				}
				if err != nil {
					if errors.Is(err, io.EOF) {
						t.Fatalf("error wraps io.EOF: %v", err)
					}
					return
				}
				if b.N == 0 {
					t.Fatal("Pull returned no packets and no error")
				}
				for _, p := range b.Pkts[:b.N] {
					if p.Len() > MaxSnapLen || p.Headroom() != pipeline.Headroom {
						t.Fatalf("packet of %d bytes with %d bytes of headroom", p.Len(), p.Headroom())
					}
				}
				if passes[i] += b.N; passes[i] > (i+1)*size/12 {
					t.Fatalf("%d packets from %d bytes", passes[i], size)
				}
			}
		}
		if passes[1] != 2*passes[0] {
			t.Fatalf("second pass read %d packets, first %d", passes[1]-passes[0], passes[0])
		}
	})
}
