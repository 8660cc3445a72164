package all

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/elements/conntrack"
	"github.com/xlbproject/xlb/elements/encap"
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
	pkts    [pipeline.MaxBatch]pipeline.Packet
	bufs    [pipeline.MaxBatch][pipeline.Headroom + 128]byte
}

func (s *replaySource) Pull(b *pipeline.Batch) error {
	for i := range s.pkts {
		f := s.frames[s.next]
		if s.next++; s.next == len(s.frames) {
			s.next = 0
		}
		buf := s.bufs[i][:]
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
	b.N = pipeline.MaxBatch
	return nil
}

// sink counts packets that made it through.
type sink struct{ n uint64 }

func (s *sink) Push(int, *pipeline.Packet) int { s.n++; return pipeline.Consumed }

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
func tcpFrames(tb testing.TB, n int, vip netip.Addr) [][]byte {
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

// benchGraph is the default data path with a replay source and a counting
// sink in place of RxXDP and TxXDP:
//
//	src -> parse -> ct; ct.hit -> encap -> out; ct.miss -> sel -> ct.learn
//	parse.bad, sel.nobackend, encap.bad -> drop
func benchGraph(tb testing.TB, frames [][]byte, rewrite bool, ctCapacity int, full bool) (*pipeline.Instance, *sink) {
	tb.Helper()
	ctl := control.New()
	cfg := &control.Config{HashSeed: 42,
		VIPs:  []control.VIP{{Name: "web", Address: netip.MustParseAddr("192.0.2.10"), Protocol: "tcp", Ports: []uint16{80}, Pool: "web"}},
		Pools: []control.Pool{{Name: "web"}}}
	for i := range 10 {
		cfg.Pools[0].Backends = append(cfg.Pools[0].Backends, control.Backend{
			Name: fmt.Sprintf("web-%d", i), Address: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), Weight: 1})
	}
	if err := ctl.Apply(cfg); err != nil {
		tb.Fatal(err)
	}
	el := func(name, typ string, configure func(pipeline.Element) error) pipeline.ElementDecl {
		return pipeline.ElementDecl{Name: name, Type: typ, Configure: configure}
	}
	conn := func(from, fport, to, tport string) pipeline.Connection {
		return pipeline.Connection{From: pipeline.Endpoint{Element: from, Port: fport}, To: pipeline.Endpoint{Element: to, Port: tport}}
	}
	spec := pipeline.Spec{Elements: []pipeline.ElementDecl{
		el("src", "BenchReplay", func(e pipeline.Element) error {
			s := e.(*replaySource)
			s.frames, s.rewrite = frames, rewrite
			return nil
		}),
		el("out", "BenchSink", nil),
	}}
	if !full {
		spec.Connections = []pipeline.Connection{conn("src", "", "out", "")}
	} else {
		spec.Elements = append(spec.Elements,
			el("parse", "Parse5Tuple", nil),
			el("ct", "ConnTrack", func(e pipeline.Element) error {
				e.(*conntrack.ConnTrack).Capacity = ctCapacity
				return nil
			}),
			el("sel", "MaglevSelect", nil),
			el("encap", "GREEncap", func(e pipeline.Element) error {
				e.(*encap.Encap).Source4 = "192.0.2.1"
				return nil
			}),
			el("drop", "Discard", nil))
		spec.Connections = []pipeline.Connection{
			conn("src", "", "parse", ""), conn("parse", "", "ct", ""),
			conn("ct", "hit", "encap", ""), conn("encap", "", "out", ""),
			conn("ct", "miss", "sel", ""), conn("sel", "", "ct", "learn"),
			conn("parse", "bad", "drop", ""), conn("sel", "nobackend", "drop", ""), conn("encap", "bad", "drop", ""),
		}
	}
	g, errs := pipeline.Build(spec)
	if errs != nil {
		tb.Fatal(errs)
	}
	rt, err := g.Start(pipeline.Options{Values: snapshot.WithStore(nil, ctl.Store())})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rt.Close() })
	inst := rt.Workers()[0]
	return inst, inst.Element("out").(*sink)
}

// BenchmarkPipeline measures Parse5Tuple -> ConnTrack -> MaglevSelect ->
// GREEncap per packet: one b.N iteration is one packet, so ns/op is
// ns/packet. "baseline" is the same source and sink with no element between
// them (the frame copy a NIC would do, plus the engine); subtract it to get
// the elements' cost.
func BenchmarkPipeline(b *testing.B) {
	vip := netip.MustParseAddr("192.0.2.10")
	cases := []struct {
		name     string
		flows    int
		rewrite  bool
		capacity int
		full     bool
	}{
		{"baseline", 1024, false, 0, false},
		{"hit", 1024, false, 1 << 16, true},
		{"miss", 1024, true, 1 << 20, true},
		{"1M-flows", 1 << 20, false, 1 << 21, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			frames := tcpFrames(b, c.flows, vip)
			inst, out := benchGraph(b, frames, c.rewrite, c.capacity, c.full)
			var batch pipeline.Batch
			src := inst.Element("src").(*replaySource)
			// Warm up: every flow once through, so hit cases start learned.
			for range (c.flows + pipeline.MaxBatch - 1) / pipeline.MaxBatch {
				_ = src.Pull(&batch)
				inst.Process(0, &batch)
			}
			out.n = 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += pipeline.MaxBatch {
				_ = src.Pull(&batch)
				inst.Process(0, &batch)
			}
			b.StopTimer()
			if sent := uint64((b.N + pipeline.MaxBatch - 1) / pipeline.MaxBatch * pipeline.MaxBatch); out.n != sent {
				b.Fatalf("%d of %d packets reached the sink", out.n, sent)
			}
		})
	}
}
