package all

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// drMACs gives b4-1 and b6-1 static MAC addresses; b4-2 has none and no
// interface to follow it on, so packets chosen for it stay unresolved.
const drMACs = `macs = {
      "198.51.100.1"  = "02:00:00:00:be:01"
      "2001:db8:1::1" = "02:00:00:00:be:06"
    }
  }`

// TestGoldenDirectRoute runs the golden captures through the default graph
// with DirectRoute in GREEncap's place (its type word and macs the only
// edits) and compares output and counters with testdata/golden/ipv<family>-dr.
// It also checks each output frame independently: the frame is an input
// frame, in order, with only its destination MAC address changed, to b4-1's
// or b6-1's; the packets Maglev chose for b4-2 are the dr.unresolved drops.
func TestGoldenDirectRoute(t *testing.T) {
	macs := map[string]bool{"02:00:00:00:be:01": true, "02:00:00:00:be:06": true}
	for _, family := range []int{4, 6} {
		name := fmt.Sprintf("ipv%d-dr", family)
		t.Run(name, func(t *testing.T) {
			src := fmt.Sprintf(goldenConfig, goldenPcap[0], "DirectRoute", goldenPcap[1], "")
			dr := strings.Replace(src, `source6 = "2001:db8::1"
  }`, `source6 = "2001:db8::1"
    `+drMACs, 1)
			if dr == src {
				t.Fatal("goldenConfig's encapsulation block changed; update this test")
			}
			dir := t.TempDir()
			in := filepath.Join(dir, "input.pcap")
			goldenInput(t, in, family)
			out, counters, _ := runCapture(t, dir, dr)
			if !bytes.Contains(counters, []byte(`reason="dr.unresolved"`)) {
				t.Errorf("no dr.unresolved drop counted:\n%s", counters)
			}
			inBytes, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			inputs, outputs := readFrames(t, inBytes), readFrames(t, out)
			if len(outputs) == 0 {
				t.Fatal("no packet sent")
			}
			i := 0
			for n, o := range outputs {
				if !macs[net.HardwareAddr(o[:6]).String()] {
					t.Errorf("packet %d: destination %s, not a backend's", n, net.HardwareAddr(o[:6]))
				}
				for i < len(inputs) && !sameButPadding(inputs[i][6:], o[6:]) {
					i++
				}
				if i == len(inputs) {
					t.Fatalf("packet %d is no input frame with its destination MAC address changed, in order", n)
				}
				i++
			}
			compareGoldenFiles(t, name, out, counters)
		})
	}
}

// sameButPadding reports whether out is in without in's Ethernet padding
// (the input frames are padded to 60 bytes; Parse5Tuple cuts padding off).
func sameButPadding(in, out []byte) bool {
	return len(out) <= len(in) && bytes.Equal(in[:len(out)], out) && !slices.ContainsFunc(in[len(out):], func(b byte) bool { return b != 0 })
}
