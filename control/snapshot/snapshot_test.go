package snapshot

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/pipeline"
)

func TestLookupVIP(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.10")
	b := netip.MustParseAddr("2001:db8::10")
	s := New(1, 0, []VIP{
		{Name: "web", Addr: a, Proto: 6, Ports: []uint16{80, 443}},
		{Name: "tcp-any-port", Addr: a, Proto: 6},
		{Name: "any-proto-53", Addr: a, Proto: 0, Ports: []uint16{53}},
		{Name: "v6-any", Addr: b},
	}, nil)
	tests := []struct {
		dst   netip.Addr
		proto uint8
		port  uint16
		want  string
	}{
		{a, 6, 80, "web"},           // exact
		{a, 6, 22, "tcp-any-port"},  // same protocol, any port
		{a, 17, 53, "any-proto-53"}, // any protocol, this port
		{a, 17, 54, ""},             // nothing
		{a, 1, 53, ""},              // ICMP "port" 53 is an echo identifier, not a port
		{b, 1, 7, "v6-any"},         // any protocol, any port
		{netip.MustParseAddr("192.0.2.11"), 6, 80, ""},
	}
	for _, tt := range tests {
		i, ok := s.LookupVIP(&pipeline.Flow{Dst: tt.dst.As16(), Proto: tt.proto, DstPort: tt.port})
		got := ""
		if ok {
			got = s.VIPs[i].Name
		}
		if got != tt.want {
			t.Errorf("LookupVIP(%v, %d, %d) = %q, want %q", tt.dst, tt.proto, tt.port, got, tt.want)
		}
	}
}

func TestLookupVIPFragments(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.10")
	s := New(1, 0, []VIP{
		{Name: "dns", Addr: a, Proto: 17, Ports: []uint16{53}},
		{Name: "b-syslog", Addr: a, Proto: 17, Ports: []uint16{514}},
		{Name: "web", Addr: a, Proto: 6, Ports: []uint16{80}},
	}, nil)
	frag := func(proto uint8) *pipeline.Flow {
		return &pipeline.Flow{Dst: a.As16(), Proto: proto, Flags: pipeline.FlowFragment}
	}
	if i, ok := s.LookupVIP(frag(17)); !ok || s.VIPs[i].Name != "b-syslog" {
		t.Errorf("a UDP fragment must go to the first UDP VIP by name (b-syslog), got %d %v", i, ok)
	}
	if i, ok := s.LookupVIP(frag(6)); !ok || s.VIPs[i].Name != "web" {
		t.Errorf("a TCP fragment must go to web, got %d %v", i, ok)
	}
	if _, ok := s.LookupVIP(frag(132)); ok {
		t.Error("an SCTP fragment matches no VIP")
	}
}

func TestRealEpoch(t *testing.T) {
	s := New(1, 0, nil, []Real{{ID: 0}, {ID: 1, Epoch: 3, State: Draining}})
	if s.Real(0, 0) != nil {
		t.Error("an unused slot (epoch 0) must not be a real")
	}
	if r := s.Real(1, 3); r == nil || !r.KeepsFlows() {
		t.Error("real 1 epoch 3 must exist and keep its flows while draining")
	}
	if s.Real(1, 2) != nil || s.Real(7, 1) != nil {
		t.Error("a stale epoch or an ID beyond the table must not be a real")
	}
}

// TestView: a view holds one snapshot from StartBatch to EndBatch whatever
// is published meanwhile, holds none between batches, and says when a
// batch's snapshot is a new publication.
func TestView(t *testing.T) {
	s1, s2 := New(1, 0, nil, nil), New(2, 0, nil, nil)
	st := NewStore(s1)
	v := NewView(st)
	v.StartBatch(0)
	if v.Snapshot() != s1 || !v.Changed() {
		t.Fatalf("first batch: %v changed %v, want generation 1, changed", v.Snapshot(), v.Changed())
	}
	st.Publish(s2)
	if v.Snapshot() != s1 {
		t.Fatal("a publication during a batch changed the batch's snapshot")
	}
	v.EndBatch()
	if v.Snapshot() != nil {
		t.Fatal("the view keeps a snapshot between batches")
	}
	v.StartBatch(0)
	if v.Snapshot() != s2 || !v.Changed() {
		t.Fatalf("next batch: generation %d changed %v, want 2, changed", v.Snapshot().Generation, v.Changed())
	}
	v.EndBatch()
	v.StartBatch(0)
	if v.Snapshot() != s2 || v.Changed() {
		t.Fatal("a batch without a publication before it reads as changed")
	}
	v.EndBatch()
	// Publishing the same snapshot again is a new publication.
	st.Publish(s2)
	v.StartBatch(0)
	if !v.Changed() {
		t.Error("a republished snapshot reads as unchanged")
	}
}

// TestWatch: the channel Watch returns closes at the next Publish, and a
// Watch then returns the new snapshot; a new store can be watched before
// its first Publish.
func TestWatch(t *testing.T) {
	st := &Store{}
	s0, ch0 := st.Watch()
	if s0 != nil {
		t.Fatalf("an empty store's Watch returned %v", s0)
	}
	s1 := New(1, 0, nil, nil)
	st.Publish(s1)
	<-ch0
	got, ch1 := st.Watch()
	if got != s1 {
		t.Fatalf("Watch after Publish returned generation %d, want 1", got.Generation)
	}
	select {
	case <-ch1:
		t.Fatal("the channel of the current snapshot is closed")
	default:
	}
	s2, s3 := New(2, 0, nil, nil), New(3, 0, nil, nil)
	st.Publish(s2)
	st.Publish(s3)
	<-ch1
	if got, _ := st.Watch(); got != s3 {
		t.Fatalf("after two publications Watch returned generation %d, want the last, 3", got.Generation)
	}
}

// TestSNATVIP finds the VIP of a SNAT address among few (compared one by
// one) and many (a map), and none for an address without SNAT.
func TestSNATVIP(t *testing.T) {
	for _, n := range []int{1, fewSNAT, fewSNAT + 1, 50} {
		var vips []VIP
		for i := range n {
			vips = append(vips, VIP{Name: fmt.Sprint("v", i), Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Proto: 6, Ports: []uint16{80},
				SNAT: &SNAT{First: 1024, Size: 1024, Owners: []uint32{NoReal}}})
		}
		vips = append(vips, VIP{Name: "plain", Addr: netip.MustParseAddr("198.51.100.1"), Proto: 6, Ports: []uint16{80}})
		s := New(1, 0, vips, nil)
		for i := range n {
			a := vips[i].Addr.As16()
			if j, ok := s.SNATVIP(&a); !ok || j != uint32(i) {
				t.Errorf("%d VIPs: SNATVIP(%s) = %d, %v", n, vips[i].Addr, j, ok)
			}
		}
		a := vips[n].Addr.As16()
		if _, ok := s.SNATVIP(&a); ok {
			t.Errorf("%d VIPs: a VIP without SNAT found", n)
		}
	}
}
