package xdp

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	xhcl "github.com/xlbproject/xlb/hcl"
	"github.com/xlbproject/xlb/pipeline"
)

// frame6 is frame with an IPv6 EtherType, under tags VLAN tags when tags
// is set (an 802.1ad S-tag, then an 802.1Q C-tag).
func frame6(id byte, tags int) []byte {
	b := frame(id)
	b[12], b[13] = 0x86, 0xdd
	tag := [][]byte{{0x88, 0xa8, 0, 1}, {0x81, 0x00, 0, 2}}
	for i := tags - 1; i >= 0; i-- {
		b = append(b[:12:12], append(tag[i][:4:4], b[12:]...)...)
	}
	return b
}

// TestGatewayPerFamily: with gateway and gateway6, a frame whose outer
// header is IPv4 goes to gateway's MAC address and one whose outer header
// is IPv6 (VLAN-tagged too) to gateway6's; an unresolved gateway6 drops
// IPv6 frames only, as xdp.no_neighbor.
func TestGatewayPerFamily(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	gw4 := []byte{0x02, 0, 0, 0, 0, 0x02} // fakePair's resolver
	gw6 := []byte{0x02, 0, 0, 0, 0x06, 0x06}
	tx.res6 = &resolver{}
	tx.res6.mac.Store(macValid | 0x020000000606)
	in := [][]byte{frame(1), frame6(2, 0), frame6(3, 1), frame6(4, 2)}
	for _, fr := range in {
		f.Deliver(fr)
	}
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	checkSocket(t, rx.sock)
	want := [][]byte{gw4, gw6, gw6, gw6}
	if len(f.Sent) != len(in) {
		t.Fatalf("sent %d of %d", len(f.Sent), len(in))
	}
	for i, s := range f.Sent {
		if !bytes.Equal(s[:6], want[i]) || !bytes.Equal(s[6:12], ifMAC) || !bytes.Equal(s[12:], in[i][12:]) {
			t.Errorf("frame %d sent to % x from % x, want % x", i, s[:6], s[6:12], want[i])
		}
	}

	tx.res6.mac.Store(0)
	f.Sent = nil
	f.Deliver(frame(5))
	f.Deliver(frame6(6, 0))
	runBatch(t, rx, tx, &b, 0)
	if len(f.Sent) != 1 || !bytes.Equal(f.Sent[0][:6], gw4) || tx.drops.Count(reasonNoNeighbor) != 1 {
		t.Errorf("gateway6 unresolved: sent %d (want the IPv4 frame), %d no_neighbor drops (want 1)", len(f.Sent), tx.drops.Count(reasonNoNeighbor))
	}
}

// TestOneGatewayBothFamilies: a single gateway, of either family, takes
// the frames of both, as one router does.
func TestOneGatewayBothFamilies(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	f.Deliver(frame(1))
	f.Deliver(frame6(2, 0))
	var b pipeline.Batch
	runBatch(t, rx, tx, &b, 0)
	gw := []byte{0x02, 0, 0, 0, 0, 0x02}
	if len(f.Sent) != 2 || !bytes.Equal(f.Sent[0][:6], gw) || !bytes.Equal(f.Sent[1][:6], gw) {
		t.Fatalf("sent %d frames, want both to % x", len(f.Sent), gw)
	}
}

// TestGatewayFamilyDiagnostics: an address of the wrong family in gateway
// or gateway6 is reported at the attribute, with the fix.
func TestGatewayFamilyDiagnostics(t *testing.T) {
	tests := []struct {
		attrs string
		at    string // line:col of the attribute
		want  string
	}{
		{`gateway = "2001:db8::1"`, "6:5", "an IPv6 next hop goes in gateway6"},
		{`gateway6 = "10.0.0.1"`, "6:5", "an IPv4 next hop goes in gateway"},
		{`gateway6 = "::ffff:10.0.0.1"`, "6:5", "an IPv4 next hop goes in gateway"},
		{`gateway = "gw"`, "6:5", "must be the IPv4 next hop's address"},
		{`gateway6 = "gw6"`, "6:5", "must be the IPv6 next hop's address"},
	}
	for _, tt := range tests {
		src := "hash_seed = 1\npipeline {\n  element \"RxXDP\" \"rx\" { interface = \"eth0\" }\n  element \"TxXDP\" \"tx\" {\n    interface = \"eth0\"\n" +
			"    " + tt.attrs + "\n  }\n  connect = [\"rx -> tx\"]\n}\n"
		_, diags := xhcl.Load("gw.hcl", []byte(src), xhcl.Options{})
		if !diags.HasErrors() {
			t.Errorf("%s: accepted", tt.attrs)
			continue
		}
		d := diags[0]
		if got := fmt.Sprintf("%s:%d:%d", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column); got != "gw.hcl:"+tt.at ||
			!strings.Contains(d.Summary+" "+d.Detail, tt.want) {
			t.Errorf("%s: %s: %s %s, want at gw.hcl:%s, saying %q", tt.attrs, got, d.Summary, d.Detail, tt.at, tt.want)
		}
	}
	tx := &TxXDP{Interface: "eth0", Gateway: "10.0.0.1", Gateway6: "fe80::1"}
	if err := tx.Validate(); err != nil {
		t.Errorf("both gateways: %v", err)
	}
}

// TestOnLinkKeepsDestination: with a gateway, a frame an element marked
// OnLink (DirectRoute's, its destination a backend's MAC address) keeps its
// destination, and is sent even while the gateway is unresolved; the
// others go to the gateway.
func TestOnLinkKeepsDestination(t *testing.T) {
	f, rx, tx := fakePair(t, 512)
	f.Record = true
	f.Deliver(frame(1))
	f.Deliver(frame(2))
	var b pipeline.Batch
	b.Reset()
	if err := rx.Pull(&b); err != nil {
		t.Fatal(err)
	}
	if b.N != 2 {
		t.Fatalf("pulled %d frames, want 2", b.N)
	}
	be := []byte{0x02, 0, 0, 0, 0xbe, 0x01}
	copy(b.Pkts[1].Data(), be)
	b.Pkts[1].OnLink = true
	tx.res.mac.Store(0) // the gateway unresolved: only the OnLink frame leaves
	tx.StartBatch(b.Now)
	for _, p := range b.Pkts[:b.N] {
		push(tx, p)
	}
	tx.EndBatch()
	if len(f.Sent) != 1 || !bytes.Equal(f.Sent[0][:6], be) || !bytes.Equal(f.Sent[0][6:12], ifMAC) {
		t.Fatalf("sent %d frames (want the OnLink one, to % x from % x)", len(f.Sent), be, ifMAC)
	}
	if n := tx.drops.Count(reasonNoNeighbor); n != 1 {
		t.Errorf("%d no_neighbor drops, want 1", n)
	}
}
