package csum

import (
	"math/rand/v2"
	"testing"
)

// TestUpdate: a checksum updated with Diff and Update for fields
// rewritten in place equals the checksum computed again over the data,
// for random data and fields of address and port sizes (RFC 1624's
// equation 3 never yields the -0 that a full computation cannot).
func TestUpdate(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		b := make([]byte, 2*(8+r.IntN(30)))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(4) == 0 {
			clear(b) // sums near zero
		}
		hc := Checksum(0, b)
		n := []int{2, 4, 16}[r.IntN(3)]
		off := 2 * r.IntN((len(b)-n)/2+1)
		nw := make([]byte, n)
		for i := range nw {
			nw[i] = byte(r.Uint32())
		}
		d := Diff(b[off:off+n], nw)
		copy(b[off:], nw)
		got, want := Update(hc, d), Checksum(0, b)
		if got != want && !(got == 0xffff && want == 0 || got == 0 && want == 0xffff) {
			t.Fatalf("Update = %#04x, computed again %#04x", got, want)
		}
		if Sum(uint32(got), b) != 0xffff {
			t.Fatalf("data with checksum %#04x does not sum to 0xffff", got)
		}
	}
}
