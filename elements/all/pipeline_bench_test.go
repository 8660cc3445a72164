package all

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/elements/xdp"
	"github.com/xlbproject/xlb/metrics"
	"github.com/xlbproject/xlb/pipeline"
)

// replaySource hands out prebuilt frames, copying each into a frame with
// headroom as a NIC would DMA it. With rewrite set it stamps a counter into
// the IPv4 source address and TCP source port, so every packet is a flow
// never seen before.
type replaySource struct {
	frames  [][]byte
	rewrite bool
	next    int
	seq     uint32
	// batch is how many packets a Pull returns; 0 means MaxBatch.
	batch int
	// umem, when set, has the packets cycle through as many frames as an
	// RxXDP socket's UMEM holds (xdp.DefaultFrames of replayFrameSize),
	// far more than the caches: a frame's headroom is then as cold as on
	// the wire when an element writes there, where the frames of MaxBatch
	// reused at every batch stay in the first-level cache.
	umem bool
	pkts [pipeline.MaxBatch]pipeline.Packet
	// bufs is MaxBatch frames (or the UMEM's) of stride bytes, Headroom
	// included, sized on the first Pull to the longest of frames (see
	// replayStride); slot is the frame the next packet takes.
	bufs   []byte
	stride int
	slot   int
}

// replayFrameSize bounds a replayed frame, its headroom included: RxXDP's
// default frame_size, so that the longest frame a NIC hands over (long
// IPv6 extension header chains, jumbo-ish datagrams) is replayed whole.
// A longer frame is cut to it.
const replayFrameSize = 4096

// replayStride is the frame size replaySource gives frames: room for the
// longest, rounded up to a cache line, and no less than Headroom + 128, so
// that the benchmarks' short frames keep the footprint (MaxBatch frames of
// 384 bytes) they were measured with.
func replayStride(frames [][]byte) int {
	longest := 128
	for _, f := range frames {
		longest = max(longest, len(f))
	}
	return min(pipeline.Headroom+(longest+63)&^63, replayFrameSize)
}

func (s *replaySource) Pull(b *pipeline.Batch) error {
	slots := pipeline.MaxBatch
	if s.umem {
		slots = xdp.DefaultFrames
	}
	if s.bufs == nil {
		s.stride = replayStride(s.frames)
		if s.umem {
			s.stride = replayFrameSize
		}
		s.bufs = make([]byte, slots*s.stride)
		// A UMEM's pages are in memory before the first packet (the
		// kernel pins them): fault them in here, not in the
		// measurement.
		for i := 0; i < len(s.bufs); i += 4096 {
			s.bufs[i] = 1
		}
	}
	n := s.batch
	if n == 0 {
		n = pipeline.MaxBatch
	}
	if !s.umem {
		s.slot = 0
	}
	for i := range n {
		f := s.frames[s.next]
		if s.next++; s.next == len(s.frames) {
			s.next = 0
		}
		k := s.slot
		if s.slot++; s.slot == slots {
			s.slot = 0
		}
		buf := s.bufs[k*s.stride : (k+1)*s.stride : (k+1)*s.stride]
		n := copy(buf[pipeline.Headroom:], f)
		if s.rewrite {
			s.seq++
			binary.BigEndian.PutUint32(buf[pipeline.Headroom+14+12:], 0xcb000000|s.seq>>8)
			binary.BigEndian.PutUint16(buf[pipeline.Headroom+14+20:], uint16(s.seq)|1024)
		}
		p := &s.pkts[i]
		p.SetFrame(buf, pipeline.Headroom, pipeline.Headroom+n)
		b.Pkts[i], b.Ports[i] = p, 0
	}
	b.N = n
	return nil
}

// sink counts packets that made it through. Like TxXDP, whose place it
// takes, it consumes a batch through PushBatch.
type sink struct{ n uint64 }

func (s *sink) Push(int, *pipeline.Packet) int { s.n++; return pipeline.Consumed }

func (s *sink) PushBatch(_ int, pkts []*pipeline.Packet, _ []uint8) int {
	s.n += uint64(len(pkts))
	return len(pkts)
}

func init() {
	pipeline.Register(pipeline.ElementType{Name: "BenchReplay", Outputs: []string{"out"},
		New: func() pipeline.Element { return &replaySource{} }})
	pipeline.Register(pipeline.ElementType{Name: "BenchSink", Inputs: []string{"in"},
		New: func() pipeline.Element { return &sink{} }})
}

// tcpFrames builds n TCP ACK frames from distinct clients to vip:80, in a
// random order but stored back to back, so the source reads memory in
// sequence as a NIC's receive ring would and the benchmark measures the
// elements' random accesses, not the fixture's.
func tcpFrames(tb testing.TB, n int, vip netip.Addr) [][]byte { return tcpFramesTo(tb, n, vip, false) }

// tcpFramesTo is tcpFrames, or with replies the frames of servers'
// replies (source port 80) to backends' outbound connections from the
// VIP, to ports 1024 to 65533: the ranges of ten backends with snat_ports
// 6451, all owned.
func tcpFramesTo(tb testing.TB, n int, vip netip.Addr, replies bool) [][]byte {
	tb.Helper()
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	frames := make([][]byte, n)
	var arena []byte
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	for k, i := range order {
		eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: []byte{10, byte(i >> 16), byte(i >> 8), byte(i)}, DstIP: vip.AsSlice()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(1024 + i%50000), DstPort: 80, ACK: true, Seq: uint32(i), Window: 512}
		if replies {
			tcp.SrcPort, tcp.DstPort = 80, layers.TCPPort(1024+i%(10*6451))
		}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		if err := gopacket.SerializeLayers(buf, opts, eth, ip, tcp); err != nil {
			tb.Fatal(err)
		}
		if arena == nil {
			arena = make([]byte, 0, n*len(buf.Bytes()))
		}
		start := len(arena)
		arena = append(arena, buf.Bytes()...)
		frames[k] = arena[start:len(arena):len(arena)]
	}
	return frames
}

// benchElements are the default graph's elements between the replay
// source and the counting sink that stand in for RxXDP and TxXDP; %[1]d is
// ConnTrack's capacity, %[2]s the encapsulation's type word (GREEncap,
// DirectRoute or NAT) and %[3]s its further attributes.
const benchElements = `
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = %[1]d
  }
  element "MaglevSelect" "sel" {}
  element "%[2]s" "encap" {
    source4 = "192.0.2.1"
    %[3]s
  }
  element "Discard" "drop" {}
  connect = default_graph()
`

// benchGraph is the default graph with a replay source and a counting sink
// in place of RxXDP and TxXDP, over one VIP of ten backends, in workers
// copies (each replaying all of frames); without full,
// only the source and the sink. mode "dr" puts DirectRoute in GREEncap's
// place, the backends' MAC addresses static; "nat" puts NAT there,
// "fullnat" FullNAT (its pool two addresses: miss fills the table with
// flows, half of whose ports one address would hold); with
// "snat", SNATReturn sits between Parse5Tuple and ConnTrack and the VIP
// gives its backends ranges of 6451 ports (ten ranges, all owned).
func benchGraph(tb testing.TB, frames [][]byte, rewrite bool, ctCapacity int, full bool, mode string, workers int) (*pipeline.Runtime, []*sink) {
	tb.Helper()
	var src strings.Builder
	src.WriteString("hash_seed = 42\npipeline {\n  element \"BenchReplay\" \"rx\" {}\n  element \"BenchSink\" \"tx\" {}\n")
	switch {
	case full && mode == "dr":
		var macs strings.Builder
		for i := range 10 {
			fmt.Fprintf(&macs, "\"198.51.100.%d\" = \"02:00:00:00:be:%02x\"\n", i+1, i+1)
		}
		fmt.Fprintf(&src, benchElements, ctCapacity, "DirectRoute", "macs = {\n"+macs.String()+"}")
	case full && (mode == "nat" || mode == "fullnat"):
		fmt.Fprintf(&src, benchElements, ctCapacity, map[string]string{"nat": "NAT", "fullnat": "FullNAT"}[mode], map[string]string{"fullnat": `source_pool = ["192.0.2.201", "192.0.2.202"]`}[mode])
	case full && mode == "snat":
		graph := fmt.Sprintf(benchElements, ctCapacity, "GREEncap", "")
		graph = strings.Replace(graph, `element "Discard"`, `element "SNATReturn" "snat" {}
  element "Discard"`, 1)
		fmt.Fprint(&src, strings.Replace(graph, "connect = default_graph()", snatConnect, 1))
	case full:
		fmt.Fprintf(&src, benchElements, ctCapacity, "GREEncap", "")
	default:
		src.WriteString("  connect = [\"rx -> tx\"]\n")
	}
	src.WriteString("}\nvip \"web\" {\n  address  = \"192.0.2.10\"\n  protocol = \"tcp\"\n  ports    = [80]\n  pool     = \"web\"\n")
	if mode == "snat" {
		src.WriteString("  snat_ports = 6451\n")
	}
	src.WriteString("}\npool \"web\" {\n")
	for i := range 10 {
		fmt.Fprintf(&src, "  backend \"web-%d\" {\n    address = \"198.51.100.%d\"\n  }\n", i, i+1)
	}
	src.WriteString("}\n")
	rt, _ := startGraph(tb, "bench.hcl", src.String(), pipeline.Options{Workers: workers})
	sinks := make([]*sink, workers)
	for i, inst := range rt.Workers() {
		rx := inst.Element("rx").(*replaySource)
		rx.frames, rx.rewrite = frames, rewrite
		sinks[i] = inst.Element("tx").(*sink)
	}
	return rt, sinks
}

// registry holds the metrics of rt's elements as xlbd serves them.
func registry(rt *pipeline.Runtime) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.New(metrics.Sources{
		Elements: rt.Stats,
		Workers:  func(e []pipeline.ElementStats) []metrics.WorkerMetric { return metrics.RuntimeWorkers(rt, e) },
	}))
	return reg
}

// scrapeLoop gathers rt's metrics as a Prometheus server scraping xlbd
// every 10 ms would, until the returned function is called.
func scrapeLoop(tb testing.TB, rt *pipeline.Runtime) (stop func()) {
	reg := registry(rt)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := reg.Gather(); err != nil {
					tb.Error(err)
				}
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// BenchmarkPipeline measures Parse5Tuple -> ConnTrack -> MaglevSelect ->
// GREEncap per packet: one b.N iteration is one packet, so ns/op is
// ns/packet. "baseline" is the same source and sink with no element between
// them (the frame copy a NIC would do, plus the engine); subtract it to get
// the elements' cost. The "-scraped" cases run the same with the metrics
// gathered every 10 ms meanwhile: the difference is what metrics cost the
// data plane. The "-batchN" cases run batches of N packets, as a worker
// gets them from a lightly loaded NIC (about 5 on the wire in issue 13):
// there the per-batch work (StartBatch, EndBatch, the engine's dispatch)
// is shared by fewer packets. The "-umem" cases put the packets in a
// socket's worth of frames (64 MB) instead of one batch's, reused: the
// frame copy then misses the caches, and so does the encapsulation's
// write into the headroom, as on the wire. "70k-flows" has the wire
// benchmark's flows and table (e2e/bench): against "hit" (1,024 flows, a
// table the caches hold) it is what the table's misses cost there. The
// "-dr" cases run DirectRoute in GREEncap's place: the difference is what
// the tunnel costs over rewriting a MAC address. The "-nat" cases run NAT
// there, which rewrites an address and records the flow's reply in
// ConnTrack's table for every packet; the
// "-fullnat" cases FullNAT, which also rewrites the source to the source
// pool's address and a port the flow's entry holds (hit) or that it
// allocates (miss).
// "hit-snat" is "hit" through a graph with SNATReturn before ConnTrack and
// SNAT on the VIP: the difference is what SNATReturn costs load-balanced
// packets; "reply-snat" sends replies to the backends' ranges, SNATReturn
// to GREEncap, no ConnTrack or Maglev.
func BenchmarkPipeline(b *testing.B) {
	cases := []pipelineCase{
		{"baseline", 1024, false, 0, false, 0, ""},
		{"hit", 1024, false, 1 << 16, true, 0, ""},
		{"miss", 1024, true, 1 << 20, true, 0, ""},
		{"1M-flows", 1 << 20, false, 1 << 21, true, 0, ""},
		// The wire benchmark's table (e2e/bench): its 69,632 flows in a
		// table of 262,144, as bench.hcl sizes it.
		{"70k-flows", 69632, false, 1 << 18, true, 0, ""},
		{"hit-dr", 1024, false, 1 << 16, true, 0, "dr"},
		{"miss-dr", 1024, true, 1 << 20, true, 0, "dr"},
		{"hit-nat", 1024, false, 1 << 16, true, 0, "nat"},
		{"miss-nat", 1024, true, 1 << 20, true, 0, "nat"},
		// Twice 1M-flows' table: every flow has its reply entry too.
		{"1M-flows-nat", 1 << 20, false, 1 << 22, true, 0, "nat"},
		{"hit-fullnat", 1024, false, 1 << 16, true, 0, "fullnat"},
		{"miss-fullnat", 1024, true, 1 << 20, true, 0, "fullnat"},
		{"hit-snat", 1024, false, 1 << 16, true, 0, "snat"},
		{"reply-snat", 1024, false, 1 << 16, true, 0, "snat"},
		// The frames of a UMEM's size (replaySource.umem): what cold
		// headroom costs the encapsulation.
		{"baseline-umem", 1024, false, 0, false, 0, ""},
		{"hit-umem", 1024, false, 1 << 16, true, 0, ""},
	}
	for _, c := range cases {
		umem := strings.HasSuffix(c.name, "-umem")
		for _, scraped := range []bool{false, true} {
			if scraped && umem {
				continue
			}
			name := c.name
			if scraped {
				name += "-scraped"
			}
			b.Run(name, func(b *testing.B) { benchPipeline(b, c, scraped) })
		}
	}
	for _, n := range []int{4, 8} {
		for _, c := range cases {
			if c.name == "miss" || c.mode != "" || strings.HasSuffix(c.name, "-umem") {
				continue
			}
			c.batch = n
			b.Run(fmt.Sprintf("%s-batch%d", c.name, n), func(b *testing.B) { benchPipeline(b, c, false) })
		}
	}
}

// pipelineCase is one traffic of BenchmarkPipeline: flows distinct
// flows, each packet a new one with rewrite, through a ConnTrack of
// capacity flows; without full, no element between source and sink;
// batch packets per batch, 0 for MaxBatch; mode puts DirectRoute ("dr")
// or NAT ("nat") or FullNAT ("fullnat") in GREEncap's place, or SNATReturn before ConnTrack
// ("snat").
type pipelineCase struct {
	name     string
	flows    int
	rewrite  bool
	capacity int
	full     bool
	batch    int
	mode     string
}

func benchPipeline(b *testing.B, c pipelineCase, scraped bool) {
	frames := tcpFramesTo(b, c.flows, netip.MustParseAddr("192.0.2.10"), c.name == "reply-snat")
	rt, sinks := benchGraph(b, frames, c.rewrite, c.capacity, c.full, c.mode, 1)
	inst, out := rt.Workers()[0], sinks[0]
	var batch pipeline.Batch
	src := inst.Element("rx").(*replaySource)
	src.umem = strings.HasSuffix(c.name, "-umem")
	n := warmUp(inst, out, c)
	if scraped {
		defer scrapeLoop(b, rt)()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += n {
		_ = src.Pull(&batch)
		inst.Process(0, &batch)
	}
	b.StopTimer()
	if sent := uint64((b.N + n - 1) / n * n); out.n != sent {
		b.Fatalf("%d of %d packets reached the sink", out.n, sent)
	}
}

// warmUp sends every flow of c once through inst, so that hit cases
// start learned, then sets its source's batch size to c's and zeroes the
// count of out, its sink; it returns the packets per batch.
func warmUp(inst *pipeline.Instance, out *sink, c pipelineCase) int {
	var batch pipeline.Batch
	src := inst.Element("rx").(*replaySource)
	for range (c.flows + pipeline.MaxBatch - 1) / pipeline.MaxBatch {
		_ = src.Pull(&batch)
		inst.Process(0, &batch)
	}
	n := pipeline.MaxBatch
	if c.batch > 0 {
		n, src.batch = c.batch, c.batch
	}
	out.n = 0
	return n
}

// BenchmarkWorkers measures what sharing nothing buys, where the wire
// cannot show it (issue 13: on two CPUs the generator takes one): w
// workers, each its own copy of the graph on a goroutine locked to its
// own thread, run a case of BenchmarkPipeline at once, each all of its
// packets, so each does what one worker alone does. ns/op is wall time
// per packet of all the workers: one worker's ns/op over w's is how
// many times one worker's rate w forward, w at most, on w idle CPUs.
// "arith" is the machine's own ceiling, measured alongside: the same
// threads doing arithmetic in registers only, which share nothing at all
// (a virtual machine's CPUs may not scale as w cores would).
func BenchmarkWorkers(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("arith/workers%d", w), func(b *testing.B) { benchArith(b, w) })
	}
	for _, c := range []pipelineCase{
		{"baseline", 1024, false, 0, false, 0, ""},
		{"hit", 1024, false, 1 << 16, true, 0, ""},
		{"1M-flows", 1 << 20, false, 1 << 21, true, 0, ""},
		{"hit-batch8", 1024, false, 1 << 16, true, 8, ""},
	} {
		for _, w := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers%d", c.name, w), func(b *testing.B) { benchWorkers(b, c, w) })
		}
	}
}

func benchWorkers(b *testing.B, c pipelineCase, workers int) {
	frames := tcpFramesTo(b, c.flows, netip.MustParseAddr("192.0.2.10"), false)
	rt, sinks := benchGraph(b, frames, c.rewrite, c.capacity, c.full, c.mode, workers)
	var n int
	for i, inst := range rt.Workers() {
		n = warmUp(inst, sinks[i], c)
	}
	batches := (b.N + workers*n - 1) / (workers * n)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for _, inst := range rt.Workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var batch pipeline.Batch
			src := inst.Element("rx").(*replaySource)
			for range batches {
				_ = src.Pull(&batch)
				inst.Process(0, &batch)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	for i, out := range sinks {
		if sent := uint64(batches * n); out.n != sent {
			b.Fatalf("worker %d: %d of %d packets reached the sink", i, out.n, sent)
		}
	}
}

// benchArith is BenchmarkWorkers' ceiling: each of workers threads
// runs its share of b.N steps of a xorshift generator, about as long as
// a packet's trip through the hit case's elements.
func benchArith(b *testing.B, workers int) {
	var wg sync.WaitGroup
	// Each result on a cache line of its own (8 words): the threads
	// write nothing else.
	sums := make([]uint64, workers*8)
	b.ResetTimer()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			x := uint64(w + 1)
			for range (b.N + workers - 1) / workers * 32 {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
			}
			sums[w*8] = x
		}()
	}
	wg.Wait()
}

// BenchmarkScrape measures one gathering of the metrics of the
// benchmark's full graph (one worker, ten backends), as scrapeLoop does
// it: the scraper's own cost, on its own core.
func BenchmarkScrape(b *testing.B) {
	rt, _ := benchGraph(b, tcpFrames(b, 1024, netip.MustParseAddr("192.0.2.10")), false, 1<<16, true, "", 1)
	reg := registry(rt)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
