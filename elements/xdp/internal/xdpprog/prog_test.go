package xdpprog

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/xlbproject/xlb/internal/testenv"
)

const xdpRedirect = 4

// Frame fixtures. Only the fields the program reads matter; the rest is
// zero.
var (
	vip4    = netip.MustParseAddr("192.0.2.10")
	other4  = netip.MustParseAddr("192.0.2.11")
	vip6    = netip.MustParseAddr("2001:db8::10")
	other6  = netip.MustParseAddr("2001:db8::11")
	ethIPv4 = []byte{0x08, 0x00}
	ethIPv6 = []byte{0x86, 0xdd}
	ethARP  = []byte{0x08, 0x06}
	tag8021 = []byte{0x81, 0x00, 0x00, 0x05} // 802.1Q, VLAN 5
	tag88a8 = []byte{0x88, 0xa8, 0x00, 0x05} // 802.1ad, VLAN 5
)

// eth returns dst MAC, src MAC (12 bytes), then tags and the EtherType.
func eth(tags []byte, typ []byte) []byte {
	b := make([]byte, 12, 64)
	b = append(b, tags...)
	return append(b, typ...)
}

// ipv4 is a 20-byte header: version/IHL 0x45, ..., protocol UDP (17) at
// 9, source at 12, destination at 16.
func ipv4(dst netip.Addr) []byte {
	h := make([]byte, 20)
	h[0], h[9] = 0x45, 17
	d := dst.As4()
	copy(h[16:], d[:])
	return h
}

// ipv6 is a 40-byte header: version 6, next header at 6, destination at
// 24.
func ipv6(next byte, dst netip.Addr) []byte {
	h := make([]byte, 40)
	h[0], h[6] = 0x60, next
	d := dst.As16()
	copy(h[24:], d[:])
	return h
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return append(out, make([]byte, 8)...) // a transport header's worth
}

// TestLoadWithoutPerfmon loads the program with the capabilities xlbd is
// given in production (docs/operations.md) and no more: without
// CAP_PERFMON (or root) the verifier refuses what it lets root do, such as
// a packet pointer plus a variable offset.
func TestLoadWithoutPerfmon(t *testing.T) {
	testenv.RequireRoot(t)
	const capNetAdmin, capNetRaw, capIPCLock, capBPF = 12, 13, 14, 39
	var err error
	testenv.OnThreadWithout(t, []uint{capNetAdmin, capNetRaw, capIPCLock, capBPF}, func() {
		var p *Program
		if p, err = Load(); err == nil {
			p.Close()
		}
	})
	if err != nil {
		t.Fatalf("loading with CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK and CAP_BPF only: %v", err)
	}
}

// loadRedirecting loads the program with the maps of Load, vips in them,
// but a devmap in place of the socket map, with an entry for queue 0 (lo):
// a redirect shows as XDP_REDIRECT, where the empty XSKMAP of a test would
// fall back to XDP_PASS. Both are closed when the test ends.
func loadRedirecting(t *testing.T, vips ...netip.Addr) (*Program, *ebpf.Program) {
	t.Helper()
	testenv.RequireRoot(t)
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.SetVIPs(vips, nil); err != nil {
		t.Fatal(err)
	}
	dev, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.DevMap, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	if err := dev.Put(uint32(0), uint32(1)); err != nil { // queue 0 -> lo
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "Dual BSD/GPL",
		Instructions: Instructions(p.VIP4.FD(), p.VIP6.FD(), dev.FD(), p.SYNCfg.FD(), p.SYNs.FD(), p.Others.FD(),
			Replies{p.Rep4.FD(), p.Rep6.FD(), p.Local4.FD(), p.Local6.FD()})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return p, prog
}

// TestVerdicts runs the program with BPF_PROG_TEST_RUN over frames of
// each kind (redirects to a devmap: loadRedirecting).
func TestVerdicts(t *testing.T) {
	p, prog := loadRedirecting(t, vip4, vip6, netip.MustParseAddr("::ffff:192.0.2.12"))

	ns := func(dst netip.Addr, typ byte) []byte { // ICMPv6 of the given type
		return cat(eth(nil, ethIPv6), ipv6(58, dst), []byte{typ, 0, 0, 0})
	}
	tests := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"IPv4 to VIP", cat(eth(nil, ethIPv4), ipv4(vip4)), xdpRedirect},
		{"IPv4 to VIP given IPv4-mapped", cat(eth(nil, ethIPv4), ipv4(netip.MustParseAddr("192.0.2.12"))), xdpRedirect},
		{"IPv4 to other", cat(eth(nil, ethIPv4), ipv4(other4)), xdpPass},
		{"802.1Q IPv4 to VIP", cat(eth(tag8021, ethIPv4), ipv4(vip4)), xdpRedirect},
		{"802.1ad IPv4 to VIP", cat(eth(tag88a8, ethIPv4), ipv4(vip4)), xdpRedirect},
		{"two tags go to the kernel", cat(eth(append(tag88a8, tag8021...), ethIPv4), ipv4(vip4)), xdpPass},
		{"IPv6 to VIP", cat(eth(nil, ethIPv6), ipv6(6, vip6)), xdpRedirect},
		{"802.1Q IPv6 to VIP", cat(eth(tag8021, ethIPv6), ipv6(17, vip6)), xdpRedirect},
		{"IPv6 to other", cat(eth(nil, ethIPv6), ipv6(6, other6)), xdpPass},
		{"ICMPv6 echo to VIP", ns(vip6, 128), xdpRedirect},
		{"neighbour solicitation to VIP", ns(vip6, 135), xdpPass},
		{"neighbour advertisement to VIP", ns(vip6, 136), xdpPass},
		{"ARP", cat(eth(nil, ethARP), ipv4(vip4)), xdpPass},
		{"IPv4 header cut short", cat(eth(nil, ethIPv4), ipv4(vip4))[:14+19], xdpPass},
		{"IPv6 header cut short", cat(eth(nil, ethIPv6), ipv6(6, vip6))[:14+39], xdpPass},
		{"802.1Q tag cut short", eth(tag8021, nil)[:15], xdpPass},
		{"bare Ethernet header", eth(nil, ethIPv4), xdpPass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := prog.Run(&ebpf.RunOptions{Data: tt.frame})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}

	// Removing a VIP passes its packets again.
	if err := p.SetVIPs([]netip.Addr{vip6}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := p.VIPs(); err != nil || len(got) != 1 || got[0] != vip6 {
		t.Errorf("VIPs after SetVIPs(%v) = %v, %v", vip6, got, err)
	}
	got, err := prog.Run(&ebpf.RunOptions{Data: cat(eth(nil, ethIPv4), ipv4(vip4))})
	if err != nil || got != xdpPass {
		t.Errorf("after removing the VIP: verdict %d (%v), want %d", got, err, xdpPass)
	}
}

func TestRegisterRange(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Register(MaxQueues, 0); err == nil {
		t.Error("Register accepted a queue beyond MaxQueues")
	}
	if err := p.Register(0, -1); err == nil {
		t.Error("Register accepted fd -1")
	}
	var ae *AttachedError
	if errors.As(p.Attach("xlbx-no-such-interface", Native), &ae) {
		t.Error("a missing interface reported as attached")
	}
}

// tcp4 is an IPv4 header (protocol TCP, header length ihl words, the
// given fragment offset field) and a TCP header with flags, to dst.
func tcp4(dst netip.Addr, ihl int, frag uint16, flags byte) []byte {
	h := make([]byte, ihl*4)
	h[0], h[9] = 0x40|byte(ihl), 6
	h[6], h[7] = byte(frag>>8), byte(frag)
	d := dst.As4()
	copy(h[16:], d[:])
	t := make([]byte, 20)
	t[13] = flags
	return append(h, t...)
}

// TestSYNLimit: with a limit of one SYN a second in bursts of two, the
// third SYN to a VIP in a row is dropped and counted, in either family,
// while every other packet to a VIP goes to the socket; no limit (rate 0)
// admits every SYN.
func TestSYNLimit(t *testing.T) {
	p, prog := loadRedirecting(t, vip4, vip6)
	run := func(frame []byte) uint32 {
		t.Helper()
		got, err := prog.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	const syn, ack = 0x02, 0x10
	syn4 := cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0x4000, syn)) // DF set
	syn6 := cat(eth(nil, ethIPv6), ipv6(6, vip6), make([]byte, 13), []byte{syn})
	for range 5 {
		if got := run(syn4); got != xdpRedirect {
			t.Fatalf("without a limit: SYN verdict %d, want %d", got, xdpRedirect)
		}
	}

	if err := p.SetSYNLimit(0, 1, 2); err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint32{xdpRedirect, xdpRedirect, xdpDrop, xdpDrop} {
		if got := run(syn4); got != want {
			t.Errorf("SYN %d: verdict %d, want %d", i+1, got, want)
		}
	}
	for _, tt := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"IPv6 SYN", syn6, xdpDrop},
		{"802.1Q SYN", cat(eth(tag8021, ethIPv4), tcp4(vip4, 5, 0, syn)), xdpDrop},
		{"SYN with options in the IPv4 header", cat(eth(nil, ethIPv4), tcp4(vip4, 15, 0, syn)), xdpDrop},
		{"SYN to another address", cat(eth(nil, ethIPv4), tcp4(other4, 5, 0, syn)), xdpPass},
		{"ACK", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, ack)), xdpRedirect},
		{"SYN-ACK", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, syn|ack)), xdpRedirect},
		{"IPv6 ACK", cat(eth(nil, ethIPv6), ipv6(6, vip6), make([]byte, 13), []byte{ack}), xdpRedirect},
		{"later fragment", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0x0010, syn)), xdpRedirect},
		{"UDP", cat(eth(nil, ethIPv4), ipv4(vip4)), xdpRedirect},
		{"TCP header cut short", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, syn))[:14+20+13], xdpRedirect},
	} {
		if got := run(tt.frame); got != tt.want {
			t.Errorf("%s over the limit: verdict %d, want %d", tt.name, got, tt.want)
		}
	}
	if n, err := p.SYNsLimited(0); err != nil || n != 5 {
		t.Errorf("SYNsLimited = %d, %v; want 5", n, err)
	}

	if err := p.SetSYNLimit(0, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := run(syn4); got != xdpRedirect {
		t.Errorf("limit removed: SYN verdict %d, want %d", got, xdpRedirect)
	}
}

// BenchmarkProgram times the program per packet in the kernel
// (BPF_PROG_TEST_RUN, 10,000 repeats a run): a UDP datagram and a TCP ACK
// to a VIP (an established flow's packets, which the SYN limit only
// classifies), and a SYN with no limit and over the limit.
// TestOtherShard: a packet to another shard's VIP is passed to the
// kernel and counted per queue, a SYN as any other; a VIP that becomes
// this node's is redirected, and one that leaves every shard is passed
// uncounted.
func TestOtherShard(t *testing.T) {
	p, prog := loadRedirecting(t, vip4)
	if err := p.SetVIPs([]netip.Addr{vip4}, []netip.Addr{other4, other6}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.VIPs(); err != nil || len(got) != 1 || got[0] != vip4 {
		t.Errorf("VIPs = %v, %v; want only the served %v", got, err, vip4)
	}
	run := func(frame []byte) uint32 {
		t.Helper()
		got, err := prog.Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for _, f := range [][]byte{
		cat(eth(nil, ethIPv4), ipv4(other4)),
		cat(eth(nil, ethIPv4), tcp4(other4, 5, 0, 0x02)),
		cat(eth(tag8021, ethIPv6), ipv6(6, other6)),
	} {
		if v := run(f); v != xdpPass {
			t.Errorf("to another shard's VIP: verdict %d, want %d", v, xdpPass)
		}
	}
	if v := run(cat(eth(nil, ethIPv4), ipv4(vip4))); v != xdpRedirect {
		t.Errorf("to this node's VIP: verdict %d, want %d", v, xdpRedirect)
	}
	if n, err := p.OtherShardPassed(0); err != nil || n != 3 {
		t.Errorf("OtherShardPassed = %d, %v; want 3", n, err)
	}
	if err := p.SetVIPs([]netip.Addr{vip4, other4}, nil); err != nil {
		t.Fatal(err)
	}
	if v := run(cat(eth(nil, ethIPv4), ipv4(other4))); v != xdpRedirect {
		t.Errorf("once this node's: verdict %d, want %d", v, xdpRedirect)
	}
	if v := run(cat(eth(nil, ethIPv6), ipv6(6, other6))); v != xdpPass {
		t.Errorf("once no VIP: verdict %d, want %d", v, xdpPass)
	}
	if n, err := p.OtherShardPassed(0); err != nil || n != 3 {
		t.Errorf("OtherShardPassed = %d, %v; want still 3", n, err)
	}
}

func BenchmarkProgram(b *testing.B) {
	testenv.RequireRoot(b)
	p, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := p.SetVIPs([]netip.Addr{vip4}, []netip.Addr{other4}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		frame []byte
		rate  int
	}{
		{"udp", cat(eth(nil, ethIPv4), ipv4(vip4)), 0},
		{"ack", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, 0x10)), 1},
		{"syn", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, 0x02)), 0},
		{"syn-limited", cat(eth(nil, ethIPv4), tcp4(vip4, 5, 0, 0x02)), 1},
		// Another shard's VIP: passed, counted.
		{"other-shard", cat(eth(nil, ethIPv4), ipv4(other4)), 0},
		{"not-vip", cat(eth(nil, ethIPv4), ipv4(netip.MustParseAddr("192.0.2.99"))), 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := p.SetSYNLimit(0, bc.rate, 1); err != nil {
				b.Fatal(err)
			}
			const repeat = 10000
			var total time.Duration
			for range b.N {
				_, d, err := p.Prog.Benchmark(bc.frame, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}

// reply is an Ethernet frame from src:sport to dst of protocol proto
// (IPv4 of header length ihl words, or IPv6), with a transport header.
func reply(src netip.Addr, sport uint16, dst netip.Addr, proto byte, ihl int) []byte {
	if src.Is4() {
		h := make([]byte, ihl*4)
		h[0], h[9] = 0x40|byte(ihl), proto
		s, d := src.As4(), dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		return cat(eth(nil, ethIPv4), h, l4(sport))
	}
	h := ipv6(proto, dst)
	s := src.As16()
	copy(h[8:], s[:])
	return cat(eth(nil, ethIPv6), h, l4(sport))
}

// l4 is a 20-byte transport header with source port sport.
func l4(sport uint16) []byte {
	return append([]byte{byte(sport >> 8), byte(sport)}, make([]byte, 18)...)
}

// icmpError is an Ethernet frame of an ICMP error of type typ to dst
// quoting a packet of protocol proto (an IPv4 header of ihl words, or
// IPv6) from dst to qdst:dport, cut after its ports (cat then adds 8
// bytes).
func icmpError(typ byte, dst, qdst netip.Addr, dport uint16, proto byte, ihl int) []byte {
	hl := ihl * 4
	if !dst.Is4() {
		hl = 40
	}
	q := reply(dst, 40000, qdst, proto, ihl)[14 : 14+hl+4]
	q[hl+2], q[hl+3] = byte(dport>>8), byte(dport)
	icmp := []byte{typ, 0, 0, 0, 0, 0, 0, 0}
	if dst.Is4() {
		return cat(reply(netip.MustParseAddr("198.51.100.254"), 0, dst, 1, 5)[:14+20], icmp, q)
	}
	return cat(reply(netip.MustParseAddr("2001:db8:ffff::1"), 0, dst, 58, 0)[:14+40], icmp, q)
}

// TestReplyVerdicts: with endpoints steered (SetReplies), a TCP or UDP
// packet from one of them to an address not the node's is redirected,
// never SYN-limited, and so is an ICMP error about a packet to one of
// them; one to the node's own address (a health check's reply), from
// another port or protocol, or a later fragment, passes, as do ICMP
// messages that are not errors, and errors about other endpoints or whose
// quote the program does not read (IPv4 options); with nothing steered,
// everything passes again.
func TestReplyVerdicts(t *testing.T) {
	p, prog := loadRedirecting(t, vip4)
	be4, be6 := netip.MustParseAddr("10.0.0.21"), netip.MustParseAddr("2001:db8:1::21")
	client4, client6 := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:c::7")
	self4, self6 := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("2001:db8:1::10")
	eps := []Endpoint{{be4, 8080, 6}, {be4, 53, 17}, {be6, 443, 6}, {be4, 99, 1}}
	if err := p.SetReplies(eps, []netip.Addr{self4, self6}); err != nil {
		t.Fatal(err)
	}
	if err := p.SetSYNLimit(0, 1, 1); err != nil {
		t.Fatal(err)
	}
	later := reply(be4, 8080, client4, 6, 5)
	later[14+7] = 0x20 // fragment offset 32 (256 bytes)
	optioned := reply(be4, 8080, client4, 6, 6)
	syn := reply(be4, 8080, client4, 6, 5)
	syn[14+20+13] = 0x02
	tests := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"TCP reply", reply(be4, 8080, client4, 6, 5), xdpRedirect},
		{"TCP reply with IP options", optioned, xdpRedirect},
		{"UDP reply", reply(be4, 53, client4, 17, 5), xdpRedirect},
		{"IPv6 TCP reply", reply(be6, 443, client6, 6, 0), xdpRedirect},
		{"SYN, not limited", syn, xdpRedirect},
		{"SYN again, not limited", syn, xdpRedirect},
		{"to the node (health check)", reply(be4, 8080, self4, 6, 5), xdpPass},
		{"IPv6 to the node", reply(be6, 443, self6, 6, 0), xdpPass},
		{"other port", reply(be4, 8081, client4, 6, 5), xdpPass},
		{"other protocol", reply(be4, 8080, client4, 17, 5), xdpPass},
		{"ICMP endpoint ignored", reply(be4, 99, client4, 1, 5), xdpPass},
		{"later fragment", later, xdpPass},
		{"other backend", reply(netip.MustParseAddr("10.0.0.22"), 8080, client4, 6, 5), xdpPass},
		{"cut before the port", reply(be4, 8080, client4, 6, 5)[:14+20+1], xdpPass},
		{"IPv6 cut before the port", reply(be6, 443, client6, 6, 0)[:14+40+1], xdpPass},
		{"ICMP error", icmpError(3, client4, be4, 8080, 6, 5), xdpRedirect},
		{"ICMP time exceeded", icmpError(11, client4, be4, 53, 17, 5), xdpRedirect},
		{"IPv6 ICMP error", icmpError(2, client6, be6, 443, 6, 0), xdpRedirect},
		{"ICMP error to the node", icmpError(3, self4, be4, 8080, 6, 5), xdpPass},
		{"IPv6 ICMP error to the node", icmpError(1, self6, be6, 443, 6, 0), xdpPass},
		{"ICMP error about another port", icmpError(3, client4, be4, 8081, 6, 5), xdpPass},
		{"IPv6 ICMP error about another port", icmpError(1, client6, be6, 444, 6, 0), xdpPass},
		{"ICMP echo", icmpError(8, client4, be4, 8080, 6, 5), xdpPass},
		{"IPv6 echo", icmpError(128, client6, be6, 443, 6, 0), xdpPass},
		{"ICMP error quoting IP options", icmpError(3, client4, be4, 8080, 6, 6), xdpPass},
		{"ICMP error cut before the port", icmpError(3, client4, be4, 8080, 6, 5)[:14+20+8+20+3], xdpPass},
		{"IPv6 ICMP error cut before the port", icmpError(1, client6, be6, 443, 6, 0)[:14+40+8+40+3], xdpPass},
		{"ICMP error cut after the port", icmpError(3, client4, be4, 8080, 6, 5)[:14+20+8+20+4], xdpRedirect},
		{"IPv6 ICMP error cut after the port", icmpError(1, client6, be6, 443, 6, 0)[:14+40+8+40+4], xdpRedirect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := prog.Run(&ebpf.RunOptions{Data: tt.frame})
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("verdict %d, want %d", got, tt.want)
			}
		})
	}
	if err := p.SetReplies(nil, []netip.Addr{self4}); err != nil {
		t.Fatal(err)
	}
	if got, err := prog.Run(&ebpf.RunOptions{Data: reply(be4, 8080, client4, 6, 5)}); err != nil || got != xdpPass {
		t.Errorf("with nothing steered: verdict %d (%v), want %d", got, err, xdpPass)
	}
	var k [4]byte
	var v uint8
	if p.Local4.Iterate().Next(&k, &v) {
		t.Errorf("with nothing steered, the local map holds %v", k)
	}
}
