package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// TestInputUpToDate regenerates the capture and compares it with the
// committed examples/offline/input.pcap, so the two cannot drift.
func TestInputUpToDate(t *testing.T) {
	name := filepath.Join(t.TempDir(), "input.pcap")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := generate(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"tcp4": 800, "tcp6": 320, "udp4": 240, "frag4": 36, "frag6": 16,
		"icmp4": 4, "icmp6": 4, "novip": 30, "malformed": 16}
	for c, n := range want {
		if counts[c] != n {
			t.Errorf("%s: %d packets, want %d (update the package comment too)", c, counts[c], n)
		}
	}
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("../input.pcap")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("examples/offline/input.pcap is stale: run `go run ./examples/offline/gen -o examples/offline/input.pcap` from the repository root")
	}
	if len(got) > 1<<20 {
		t.Errorf("capture is %d bytes, want under 1 MiB", len(got))
	}
}

// TestPackets decodes every generated packet with gopacket and checks what
// its category promises: addresses, ports, flags, checksums, fragment
// layout, and that ICMP errors quote a flow that has already started.
func TestPackets(t *testing.T) {
	recs := build()
	client4 := net.IPNet{IP: net.IP{203, 0, 113, 0}, Mask: net.CIDRMask(24, 32)}
	client6 := net.IPNet{IP: net.ParseIP("2001:db8:c::"), Mask: net.CIDRMask(64, 128)}
	flows := map[string][]string{}  // client endpoint -> TCP flags seen, for tcp4/tcp6
	frags4 := map[uint16][]uint16{} // IP ID -> fragment offsets
	frags6 := map[uint32]int{}      // identification -> fragments
	dns := map[string]int{}         // client endpoint -> queries
	malformed := map[string]int{}   // what gopacket made of it
	started := map[string]bool{}    // client endpoints that sent a SYN
	for i, r := range recs {
		if want := start.Add(time.Duration(i) * time.Millisecond); !r.ts.Equal(want) {
			t.Fatalf("packet %d at %v, want %v", i, r.ts, want)
		}
		p := gopacket.NewPacket(r.data, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("packet %d (%s): %s\n%s", i, r.cat, fmt.Sprintf(format, args...), p.Dump())
		}
		if r.cat == "malformed" {
			if !malformedOK(r.kind, r.data, p) {
				fail("not a %s frame", r.kind)
			}
			malformed[r.kind]++
			continue
		}
		if p.ErrorLayer() != nil {
			fail("decode error: %v", p.ErrorLayer().Error())
		}
		if len(r.data) < 60 {
			fail("frame of %d bytes is not padded", len(r.data))
		}
		e := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !bytes.Equal(e.SrcMAC, routerMAC) || !bytes.Equal(e.DstMAC, xlbMAC) {
			fail("MACs %v -> %v", e.SrcMAC, e.DstMAC)
		}
		ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		ip6, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip4 != nil && !ipv4ChecksumOK(r.data[14:34]) {
			fail("bad IPv4 header checksum")
		}
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		switch r.cat {
		case "tcp4", "tcp6":
			var key string
			switch {
			case tcp == nil || tcp.DstPort != 80:
				fail("not TCP to port 80")
			case r.cat == "tcp4" && (ip4 == nil || !ip4.DstIP.Equal(vip4) || !client4.Contains(ip4.SrcIP)):
				fail("not client4 -> 192.0.2.10")
			case r.cat == "tcp6" && (ip6 == nil || !ip6.DstIP.Equal(vip6) || !client6.Contains(ip6.SrcIP)):
				fail("not client6 -> 2001:db8::10")
			case ip4 != nil:
				key = fmt.Sprint(ip4.SrcIP, tcp.SrcPort)
			default:
				key = fmt.Sprint(ip6.SrcIP, tcp.SrcPort)
			}
			flows[key] = append(flows[key], tcpFlags(tcp))
			started[key] = true
		case "udp4", "novip":
			dst := vip4
			if r.cat == "novip" {
				dst = novip4
			}
			if ip4 == nil || !ip4.DstIP.Equal(dst) || !client4.Contains(ip4.SrcIP) {
				fail("not client4 -> %v", dst)
			}
			if udp != nil {
				if d, ok := p.Layer(layers.LayerTypeDNS).(*layers.DNS); !ok || udp.DstPort != 53 || len(d.Questions) != 1 {
					fail("not a DNS query to port 53")
				}
				dns[fmt.Sprint(ip4.SrcIP, udp.SrcPort)]++
			} else if tcp == nil || tcp.DstPort != 80 || r.cat != "novip" {
				fail("not UDP/53 or novip TCP/80")
			}
		case "frag4":
			if ip4 == nil || !ip4.DstIP.Equal(vip4) || ip4.Protocol != layers.IPProtocolUDP {
				fail("not a UDP fragment to 192.0.2.10")
			}
			more := ip4.Flags&layers.IPv4MoreFragments != 0
			if n := len(ip4.Payload); (more && n != 1480) || (!more && n != 40) {
				fail("fragment of %d bytes, more=%v", n, more)
			}
			frags4[ip4.Id] = append(frags4[ip4.Id], ip4.FragOffset)
		case "frag6":
			fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment)
			if ip6 == nil || !ok || !ip6.DstIP.Equal(vip6) || fh.NextHeader != layers.IPProtocolUDP {
				fail("not a UDP fragment to 2001:db8::10")
			}
			frags6[fh.Identification]++
		case "icmp4":
			ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if !ok || ic.TypeCode.Type() != 3 || ic.TypeCode.Code() != 4 || ic.Seq != 1400 || !ip4.DstIP.Equal(vip4) {
				fail("not a fragmentation-needed to 192.0.2.10")
			}
			q := ic.Payload
			if len(q) < 28 || !net.IP(q[12:16]).Equal(vip4) || binary.BigEndian.Uint16(q[20:]) != 80 {
				fail("quote is not 192.0.2.10:80 -> client")
			}
			if key := fmt.Sprint(net.IP(q[16:20]), binary.BigEndian.Uint16(q[22:])); !started[key] {
				fail("quotes %s, which has not started", key)
			}
		case "icmp6":
			ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			if !ok || ic.TypeCode.Type() != layers.ICMPv6TypePacketTooBig || !ip6.DstIP.Equal(vip6) {
				fail("not a packet-too-big to 2001:db8::10")
			}
			q := ic.Payload[4:] // after the MTU
			if binary.BigEndian.Uint32(ic.Payload) != 1280 || len(q) < 48 || !net.IP(q[8:24]).Equal(vip6) || binary.BigEndian.Uint16(q[40:]) != 80 {
				fail("quote is not [2001:db8::10]:80 -> client")
			}
			if key := fmt.Sprint(net.IP(q[24:40]), binary.BigEndian.Uint16(q[42:])); !started[key] {
				fail("quotes %s, which has not started", key)
			}
		default:
			fail("unknown category")
		}
	}

	tcpFlows := 0
	for key, fl := range flows {
		if fmt.Sprint(fl) != "[S A PA FA]" {
			t.Errorf("flow %s: flags %v, want SYN, ACK, request, FIN", key, fl)
		}
		tcpFlows++
	}
	if tcpFlows != 280 {
		t.Errorf("%d TCP flows to VIPs, want 280", tcpFlows)
	}
	if len(dns) != 130 {
		t.Errorf("%d DNS flows, want 130 (120 to the VIP, 10 to no VIP)", len(dns))
	}
	if len(frags4) != 12 {
		t.Errorf("%d fragmented IPv4 datagrams, want 12", len(frags4))
	}
	reversed := 0
	for id, offs := range frags4 {
		if fmt.Sprint(offs) == "[370 185 0]" {
			reversed++
		} else if fmt.Sprint(offs) != "[0 185 370]" {
			t.Errorf("datagram %d: fragment offsets %v", id, offs)
		}
	}
	if reversed != 3 {
		t.Errorf("%d datagrams arrive last fragment first, want 3", reversed)
	}
	if len(frags6) != 8 {
		t.Errorf("%d fragmented IPv6 datagrams, want 8", len(frags6))
	}
	if len(malformed) != 8 {
		t.Errorf("%d malformed kinds, want 8", len(malformed))
	}
	for k, n := range malformed {
		if n != 2 {
			t.Errorf("%d %s frames, want 2", n, k)
		}
	}
}

// malformedOK checks that frame f has the one defect its kind names.
func malformedOK(kind string, f []byte, p gopacket.Packet) bool {
	be := binary.BigEndian
	ipv4 := len(f) >= 14 && be.Uint16(f[12:]) == 0x0800
	switch kind {
	case "truncated-ethernet":
		return len(f) < 14
	case "truncated-ipv4":
		return ipv4 && len(f) < 14+20 && f[14] == 0x45
	case "bad-version":
		return ipv4 && len(f) >= 34 && f[14] == 0x55 && ipv4ChecksumOK(f[14:34])
	case "bad-ihl":
		return ipv4 && len(f) >= 34 && f[14] == 0x44 && ipv4ChecksumOK(f[14:34])
	case "length-beyond-capture":
		return ipv4 && len(f) >= 34 && f[14] == 0x45 && int(be.Uint16(f[16:])) > len(f)-14 && ipv4ChecksumOK(f[14:34])
	case "truncated-tcp":
		return ipv4 && len(f) >= 34 && f[14] == 0x45 && f[14+9] == 6 && be.Uint16(f[16:]) == 30 && ipv4ChecksumOK(f[14:34])
	case "ipv6-deep-extension-chain":
		n := 0
		for _, l := range p.Layers() {
			if l.LayerType() == layers.LayerTypeIPv6Destination {
				n++
			}
		}
		_, tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		return n == 16 && tcp
	case "arp":
		a, ok := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		return ok && a.Operation == layers.ARPRequest && net.IP(a.DstProtAddress).Equal(vip4)
	}
	return false
}

func tcpFlags(t *layers.TCP) string {
	s := ""
	for _, f := range []struct {
		on bool
		c  string
	}{{t.SYN, "S"}, {t.PSH, "P"}, {t.FIN, "F"}, {t.ACK, "A"}} {
		if f.on {
			s += f.c
		}
	}
	return s
}

func ipv4ChecksumOK(h []byte) bool {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum == 0xffff
}
