package parse

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// Test cluster: three nodes with static MAC addresses 02:00:00:00:0b:0N.
var testFragNodes = []FragNode{{"lb1", "10.0.0.11"}, {"lb2", "10.0.0.12"}, {"lb3", "10.0.0.13"}}

func testFragMACs() map[string]string {
	return map[string]string{"lb1": "02:00:00:00:0b:01", "lb2": "02:00:00:00:0b:02", "lb3": "02:00:00:00:0b:03"}
}

// newRedirect starts a FragRedirect for node self over nodes (in that
// order), with static MAC addresses.
func newRedirect(t testing.TB, self string, nodes []FragNode) *pipelinetest.Harness {
	t.Helper()
	return pipelinetest.New(t, "FragRedirect", pipelinetest.Options{
		Values: snapshot.ContextValues(snapshot.NewStore(snapshot.New(1, testSeed, nil, nil))),
		Configure: func(el pipeline.Element) error {
			e := el.(*FragRedirect)
			e.Self, e.Nodes, e.MACs = self, nodes, testFragMACs()
			return nil
		},
	})
}

// clientFrag4 is a first (later = false) or later fragment of the UDP
// datagram with id from 203.0.113.<client>.
func clientFrag4(client int, id uint16, later bool) []byte {
	src := fmt.Sprintf("203.0.113.%d", client)
	var b []byte
	if later {
		b = cat(ether(etherTypeIPv4), ipv4(src, vip4, protoUDP, 3, nil, make([]byte, 16)))
	} else {
		b = cat(ether(etherTypeIPv4), ipv4(src, vip4, protoUDP, 0x2000, nil, udp(uint16(40000+client), 53, 32), make([]byte, 16)))
	}
	b[14+4], b[14+5] = byte(id>>8), byte(id)
	return b
}

// clientFrag6 is clientFrag4 for IPv6 client 2001:db8::<client>.
func clientFrag6(client int, id uint16, later bool) []byte {
	src := fmt.Sprintf("2001:db8::%x", client)
	fh := []byte{protoUDP, 0, 0, 1, 0, 0, byte(id >> 8), byte(id)}
	if later {
		fh[2], fh[3] = 0, 3<<3
		return cat(ether(etherTypeIPv6), ipv6(src, vip6, protoFragment, fh, make([]byte, 16)))
	}
	return cat(ether(etherTypeIPv6), ipv6(src, vip6, protoFragment, fh, udp(uint16(40000+client), 53, 32)))
}

// push runs one frame through h and returns the port it left by and the
// frame as it left.
func pushRedirect(t testing.TB, h *pipelinetest.Harness, frame []byte) (string, []byte) {
	t.Helper()
	out := h.Push(0, pipelinetest.Packet(frame))
	for port, ps := range out {
		if len(ps) == 1 {
			return port, ps[0].Data()
		}
	}
	t.Fatalf("no packet out: %v", out)
	return "", nil
}

// TestFragRedirectAgree: every node, with the list in any order, chooses
// the same node for every fragment of a datagram, first and later, of
// either family; it keeps those chosen for itself and sends the others,
// unchanged but for the destination MAC address, to the chosen node's
// MAC. Every node is chosen for some datagrams.
func TestFragRedirectAgree(t *testing.T) {
	orders := [][]FragNode{testFragNodes, {testFragNodes[2], testFragNodes[0], testFragNodes[1]}}
	var hs []*pipelinetest.Harness
	for i, self := range []string{"lb1", "lb2", "lb3"} {
		hs = append(hs, newRedirect(t, self, orders[i%2]))
	}
	macs := testFragMACs()
	chosen := map[string]int{}
	for _, mk := range []func(int, uint16, bool) []byte{clientFrag4, clientFrag6} {
		for client := 1; client <= 60; client++ {
			var pick string
			for _, later := range []bool{false, true} {
				frame := mk(client, uint16(client), later)
				keptBy := ""
				for n, h := range hs {
					self := fmt.Sprintf("lb%d", n+1)
					port, data := pushRedirect(t, h, slices.Clone(frame))
					switch port {
					case "out":
						if keptBy != "" {
							t.Fatalf("client %d: kept by %s and %s", client, keptBy, self)
						}
						keptBy = self
					case "redirect":
						to := ""
						for name, mac := range macs {
							if mac == net.HardwareAddr(data[:6]).String() {
								to = name
							}
						}
						if to == "" || to == self || !slices.Equal(data[6:], frame[6:]) {
							t.Fatalf("client %d: %s redirected to %q, or changed the frame", client, self, to)
						}
						if pick != "" && pick != to {
							t.Fatalf("client %d: sent to %s and %s", client, pick, to)
						}
						pick = to
					default:
						t.Fatalf("client %d: %s: port %s", client, self, port)
					}
				}
				if keptBy == "" || (pick != "" && pick != keptBy) {
					t.Fatalf("client %d: kept by %q, redirected to %q", client, keptBy, pick)
				}
				pick = keptBy
			}
			chosen[pick]++
		}
	}
	if len(chosen) != 3 {
		t.Errorf("nodes chosen: %v, want all three", chosen)
	}
	// Not a fragment: kept, without a count.
	if port, _ := pushRedirect(t, hs[0], slices.Clone(synPadded)); port != "out" {
		t.Errorf("a SYN left by %s", port)
	}
	st := map[string]uint64{}
	for _, h := range hs {
		for _, m := range h.Stats().Metrics {
			st[m.Name] += m.Value
		}
	}
	if st["xlb_fragredirect_kept_total"] != 240 || st["xlb_fragredirect_redirected_total"] != 480 {
		t.Errorf("kept %d, redirected %d, want 240 and 480", st["xlb_fragredirect_kept_total"], st["xlb_fragredirect_redirected_total"])
	}
}

// TestFragRedirectLoop: a fragment that comes from another node's MAC
// address and that this node would send to a third is kept (the lists
// differ) and counted as looped, never sent on.
func TestFragRedirectLoop(t *testing.T) {
	h := newRedirect(t, "lb1", testFragNodes)
	looped := 0
	for client := 1; client <= 20; client++ {
		frame := clientFrag4(client, 1, true)
		port, _ := pushRedirect(t, h, slices.Clone(frame))
		copy(frame[6:12], []byte{2, 0, 0, 0, 0x0b, 2}) // from lb2
		port2, _ := pushRedirect(t, h, frame)
		if port2 != "out" {
			t.Fatalf("client %d: a fragment from lb2 left by %s", client, port2)
		}
		if port == "redirect" {
			looped++
		}
	}
	m := map[string]uint64{}
	for _, x := range h.Stats().Metrics {
		m[x.Name] = x.Value
	}
	if looped == 0 || m["xlb_fragredirect_looped_total"] != uint64(looped) {
		t.Errorf("looped %d, want %d (> 0)", m["xlb_fragredirect_looped_total"], looped)
	}
}

// fakeNeighbor is a followed node whose MAC address the test sets.
type fakeNeighbor struct {
	mac [6]byte
	ok  bool
}

func (f *fakeNeighbor) MAC() ([6]byte, bool) { return f.mac, f.ok }
func (f *fakeNeighbor) Release()             {}

// TestFragRedirectUnresolved: a fragment for a node whose MAC address is
// not resolved is dropped as fragredirect.unresolved and counted; once it
// resolves (read at the next batch), the fragment is sent to it.
func TestFragRedirectUnresolved(t *testing.T) {
	h := newRedirect(t, "lb1", testFragNodes)
	e := h.Element().(*FragRedirect)
	nb := &fakeNeighbor{}
	for i := range e.peers {
		if i != e.self {
			e.peers[i].nb, e.peers[i].macOK = nb, false
		}
	}
	client := 1
	for ; e.choose(&pipeline.Flow{Src: mapped(t, fmt.Sprintf("203.0.113.%d", client)), Dst: mapped(t, vip4), Proto: protoUDP}) == e.self; client++ {
	}
	out := h.Push(0, pipelinetest.Packet(clientFrag4(client, 1, false)))
	if len(out["out"])+len(out["redirect"]) != 0 {
		t.Fatalf("sent while unresolved: %v", out)
	}
	st := h.Stats()
	var unresolved uint64
	for _, m := range st.Metrics {
		if m.Name == "xlb_fragredirect_unresolved_total" {
			unresolved = m.Value
		}
	}
	if unresolved != 1 || st.Dropped != 1 {
		t.Errorf("unresolved %d, dropped %d, want 1 and 1", unresolved, st.Dropped)
	}
	nb.mac, nb.ok = [6]byte{2, 0, 0, 0, 0x0b, 9}, true
	if port, data := pushRedirect(t, h, clientFrag4(client, 1, false)); port != "redirect" || data[5] != 9 {
		t.Errorf("resolved: left by %s to %x", port, data[:6])
	}
}

func mapped(t testing.TB, a string) [16]byte { return netip.MustParseAddr(a).Unmap().As16() }

// TestFragRedirectValidate: each bad configuration names its attribute.
func TestFragRedirectValidate(t *testing.T) {
	macs := testFragMACs()
	for _, tc := range []struct {
		name string
		e    *FragRedirect
		attr string
	}{
		{"no nodes", &FragRedirect{Self: "lb1", MACs: macs}, "nodes"},
		{"self not listed", &FragRedirect{Self: "lb9", Nodes: testFragNodes, MACs: macs}, "self"},
		{"duplicate", &FragRedirect{Self: "lb1", Nodes: append(slices.Clone(testFragNodes), FragNode{"lb2", "10.0.0.22"}), MACs: macs}, "nodes"},
		{"bad address", &FragRedirect{Self: "lb1", Nodes: []FragNode{{"lb1", "10.0.0.11"}, {"lb2", "lb2.example"}}, MACs: macs}, "nodes"},
		{"unnamed", &FragRedirect{Self: "lb1", Nodes: []FragNode{{"lb1", "10.0.0.11"}, {"", "10.0.0.12"}}, MACs: macs}, "nodes"},
		{"bad mac", &FragRedirect{Self: "lb1", Nodes: testFragNodes, MACs: map[string]string{"lb2": "02:00", "lb3": "02:00:00:00:0b:03"}}, "macs"},
		{"mac of no node", &FragRedirect{Self: "lb1", Nodes: testFragNodes, MACs: map[string]string{"lb2": "02:00:00:00:0b:02", "lb3": "02:00:00:00:0b:03", "lb4": "02:00:00:00:0b:04"}}, "macs"},
		{"no interface", &FragRedirect{Self: "lb1", Nodes: testFragNodes, MACs: map[string]string{"lb2": "02:00:00:00:0b:02"}}, "interface"},
	} {
		var ae *pipeline.AttrError
		if err := tc.e.Validate(); !errors.As(err, &ae) || ae.Attr != tc.attr {
			t.Errorf("%s: %v, want an error on %s", tc.name, err, tc.attr)
		}
	}
	ok := FragRedirect{Self: "lb1", Nodes: testFragNodes, Interface: "eth0"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
}

// TestFragRedirectAllocs: no allocation per packet, fragment or not.
func TestFragRedirectAllocs(t *testing.T) {
	h := newRedirect(t, "lb1", testFragNodes)
	e := h.Element().(*FragRedirect)
	frames := [][]byte{synPadded, clientFrag4(1, 1, false), clientFrag6(2, 1, true)}
	p := pipelinetest.Packet(nil)
	if n := testing.AllocsPerRun(100, func() {
		for _, f := range frames {
			p.SetFrame(f, 0, len(f))
			e.Push(0, p)
		}
	}); n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}

// BenchmarkFragRedirect is the cost FragRedirect adds in front of
// Parse5Tuple, for an unfragmented packet (every packet pays it) and for a
// fragment (the choice over 3 nodes).
func BenchmarkFragRedirect(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"unfragmented", synPadded},
		{"unfragmented-ipv6", cat(ether(etherTypeIPv6), ipv6(client6, vip6, protoUDP, udp(40000, 53, 32)))},
		{"fragment", clientFrag4(1, 1, true)},
		{"fragment-ipv6", clientFrag6(1, 1, true)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newRedirect(b, "lb1", testFragNodes)
			e := h.Element().(*FragRedirect)
			p := pipelinetest.Packet(nil)
			b.ReportAllocs()
			for b.Loop() {
				p.SetFrame(bc.frame, 0, len(bc.frame))
				e.Push(0, p)
			}
		})
	}
	// What the cases above pay without FragRedirect: the frame set.
	b.Run("frame-only", func(b *testing.B) {
		p := pipelinetest.Packet(nil)
		for b.Loop() {
			p.SetFrame(synPadded, 0, len(synPadded))
		}
	})
}
