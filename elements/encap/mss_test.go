package encap

import (
	"bytes"
	"net"
	"slices"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/pipeline"
)

// synPacket serializes a TCP segment to a VIP with opts, checksums
// computed by gopacket, and returns the IP packet and the TCP offset.
func synPacket(t *testing.T, family int, syn bool, opts []layers.TCPOption) ([]byte, int) {
	t.Helper()
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: syn, ACK: !syn, Window: 1024, Options: opts}
	var ip gopacket.SerializableLayer
	hdr := 20
	if family == 4 {
		h := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IPv4(203, 0, 113, 7), DstIP: net.IPv4(192, 0, 2, 10)}
		_ = tcp.SetNetworkLayerForChecksum(h)
		ip = h
	} else {
		h := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP("2001:db8:c::7"), DstIP: net.ParseIP("2001:db8:a::10")}
		_ = tcp.SetNetworkLayerForChecksum(h)
		ip, hdr = h, 40
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return slices.Clone(buf.Bytes()), hdr
}

func mssOpt(v uint16) layers.TCPOption {
	return layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(v >> 8), byte(v)}}
}

var nop = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}

// tcpSum is the checksum over the pseudo-header and segment: 0 when right.
func tcpSum(ip []byte, l4 int) uint16 {
	seg := ip[l4:]
	n := len(seg)
	pseudo := cat(ip[12:20], []byte{0, 6, byte(n >> 8), byte(n)})
	if ip[0]>>4 == 6 {
		pseudo = cat(ip[8:40], []byte{0, 0, byte(n >> 8), byte(n), 0, 0, 0, 6})
	}
	return rfc1071(cat(pseudo, seg))
}

func TestMSSClamp(t *testing.T) {
	wscale := layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}}
	sack := layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2}
	for _, tc := range []struct {
		name string
		syn  bool
		opts []layers.TCPOption
		want uint16 // MSS after; 0: the packet is unchanged
	}{
		{"SYN 1460", true, []layers.TCPOption{mssOpt(1460), sack, wscale}, 1396},
		{"SYN 1460 at an odd offset", true, []layers.TCPOption{nop, mssOpt(1460), sack}, 1396},
		{"SYN after window scale", true, []layers.TCPOption{wscale, mssOpt(0xffff)}, 1396},
		{"SYN 1396", true, []layers.TCPOption{mssOpt(1396)}, 0},
		{"SYN 536", true, []layers.TCPOption{mssOpt(536)}, 0},
		{"SYN without MSS", true, []layers.TCPOption{sack, wscale}, 0},
		{"ACK with an MSS option", false, []layers.TCPOption{mssOpt(1460)}, 0},
		{"option length 0", true, []layers.TCPOption{{OptionType: 30, OptionLength: 0}, mssOpt(1460)}, 0},
	} {
		for _, family := range []int{4, 6} {
			ip, l4 := synPacket(t, family, tc.syn, tc.opts)
			if tc.name == "option length 0" {
				ip[l4+21] = 0 // gopacket writes the length it is given, fixed up here
			}
			frame := cat(map[int][]byte{4: ethIn4, 6: ethIn6}[family], ip)
			p := newPacket(frame, 0, 14, 0)
			p.L4 = uint16(14 + l4)
			p.Flow.Proto = 6
			m := &MSSClamp{MSS: 1396}
			if port := m.Push(0, p); port != 0 {
				t.Fatalf("%s: port %d", tc.name, port)
			}
			m.EndBatch()
			out := p.Data()
			if tc.want == 0 {
				if !bytes.Equal(out, frame) {
					t.Errorf("%s, IPv%d: changed", tc.name, family)
				}
				continue
			}
			pkt := gopacket.NewPacket(out[14:], map[int]gopacket.LayerType{4: layers.LayerTypeIPv4, 6: layers.LayerTypeIPv6}[family], gopacket.Default)
			seg, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
			var got uint16
			for _, o := range seg.Options {
				if o.OptionType == layers.TCPOptionKindMSS {
					got = uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
				}
			}
			if got != tc.want || tcpSum(out[14:], l4) != 0 {
				t.Errorf("%s, IPv%d: MSS %d (want %d), checksum sum %#x", tc.name, family, got, tc.want, tcpSum(out[14:], l4))
			}
			if v := metrics(m)["xlb_mss_clamped_total"]; v != 1 {
				t.Errorf("%s: clamped_total %d", tc.name, v)
			}
		}
	}
	for _, mss := range []int{0, 535, 65536} {
		if (&MSSClamp{MSS: mss}).Validate() == nil {
			t.Errorf("mss %d accepted", mss)
		}
	}
}

func TestMSSClampSkips(t *testing.T) {
	ip, l4 := synPacket(t, 4, true, []layers.TCPOption{mssOpt(1460)})
	for _, flags := range []uint8{pipeline.FlowFragment, pipeline.FlowICMPError} {
		frame := cat(ethIn4, ip)
		p := newPacket(frame, 0, 14, 0)
		p.L4, p.Flow.Proto, p.Flow.Flags = uint16(14+l4), 6, flags
		(&MSSClamp{MSS: 1396}).Push(0, p)
		if !bytes.Equal(p.Data(), frame) {
			t.Errorf("flags %d: changed", flags)
		}
	}
}

func TestMSSClampAllocs(t *testing.T) {
	ip, l4 := synPacket(t, 4, true, []layers.TCPOption{mssOpt(1460)})
	frame := cat(ethIn4, ip)
	m := &MSSClamp{MSS: 1396}
	var p pipeline.Packet
	buf := make([]byte, len(frame))
	if a := testing.AllocsPerRun(1000, func() {
		copy(buf, frame)
		p.SetFrame(buf, 0, len(buf))
		p.L3, p.L4, p.Flow.Proto = 14, uint16(14+l4), 6
		m.Push(0, &p)
		m.EndBatch()
	}); a != 0 {
		t.Errorf("%v allocations per packet", a)
	}
}
