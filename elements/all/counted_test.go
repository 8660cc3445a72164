package all

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

// encodeFrames lays frames end to end, each after its 16-bit length: the
// fuzz input of FuzzCounted.
func encodeFrames(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeFrames undoes encodeFrames; a length past the end takes the rest.
func decodeFrames(b []byte) [][]byte {
	var frames [][]byte
	for len(b) >= 2 {
		n := min(int(binary.BigEndian.Uint16(b)), len(b)-2)
		frames = append(frames, b[2:2+n])
		b = b[2+n:]
	}
	return frames
}

// FuzzCounted runs arbitrary frames through the default graph and checks
// that every packet that entered was counted once: sent (it reached the
// sink), or dropped by one element under one reason.
func FuzzCounted(f *testing.F) {
	vip4, vip6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")
	tcp := tcpFrames(f, 3, vip4)
	// A TCP flow to the VIP, one to no VIP, an IPv6 header alone, cut
	// frames, and bytes that are no frame at all.
	f.Add(encodeFrames(tcp...))
	f.Add(encodeFrames(tcpFrames(f, 1, netip.MustParseAddr("192.0.2.99"))[0], tcp[0][:14+12], []byte{1, 2, 3}))
	v6 := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0, 0, 0, 6, 64}, make([]byte, 32)...)
	copy(v6[14+24:], vip6.AsSlice())
	f.Add(encodeFrames(v6, tcp[1][:20]))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		frames := decodeFrames(data)
		if len(frames) == 0 {
			return
		}
		src := fmt.Sprintf(goldenConfig, `element "TestFiniteReplay" "rx" {}`, "GREEncap", `element "BenchSink" "tx" {}`, "")
		rt, _ := startGraph(t, "counted.hcl", src, pipeline.Options{})
		inst := rt.Workers()[0]
		rx := inst.Element("rx").(*finiteReplay)
		rx.frames, rx.batches = frames, 2
		if err := rt.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		stats := rt.Stats()
		checkCounted(t, stats)
		for _, s := range stats {
			if s.Name == "tx" && s.Consumed != inst.Element("tx").(*sink).n {
				t.Errorf("tx consumed %d, its sink got %d", s.Consumed, inst.Element("tx").(*sink).n)
			}
		}
	})
}
