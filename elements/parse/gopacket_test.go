package parse

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/pipeline/pipelinetest"
)

// TestAgainstGopacket builds random TCP and UDP frames, IPv4 and IPv6, with
// and without a VLAN tag, with gopacket, and checks that Parse5Tuple reads
// the same 5-tuple as gopacket's decoder.
func TestAgainstGopacket(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	e := newTestElement(testSeed)
	opts := gopacket.SerializeOptions{FixLengths: true}
	for i := range 500 {
		var stack []gopacket.SerializableLayer
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
		stack = append(stack, eth)
		v6 := r.IntN(2) == 1
		ipType := layers.EthernetTypeIPv4
		if v6 {
			ipType = layers.EthernetTypeIPv6
		}
		if r.IntN(2) == 1 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			stack = append(stack, &layers.Dot1Q{VLANIdentifier: uint16(r.IntN(4095)), Type: ipType})
		} else {
			eth.EthernetType = ipType
		}
		proto := layers.IPProtocolTCP
		if r.IntN(2) == 1 {
			proto = layers.IPProtocolUDP
		}
		var net gopacket.NetworkLayer
		if v6 {
			src, dst := make([]byte, 16), make([]byte, 16)
			fill(r, src)
			fill(r, dst)
			src[0] = 0x20 | src[0]&0x1f // global unicast, never martian
			ip := &layers.IPv6{Version: 6, NextHeader: proto, HopLimit: 64, SrcIP: src, DstIP: dst}
			stack, net = append(stack, ip), ip
		} else {
			src, dst := make([]byte, 4), make([]byte, 4)
			fill(r, src)
			fill(r, dst)
			src[0] = 1 + src[0]%126 // 1-126: never martian
			ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst}
			stack, net = append(stack, ip), ip
		}
		sport, dport := layers.TCPPort(r.Uint32()), layers.TCPPort(r.Uint32())
		if proto == layers.IPProtocolTCP {
			tcp := &layers.TCP{SrcPort: sport, DstPort: dport, DataOffset: 5, ACK: true}
			_ = tcp.SetNetworkLayerForChecksum(net)
			stack = append(stack, tcp)
		} else {
			stack = append(stack, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)})
		}
		payload := make([]byte, r.IntN(64))
		stack = append(stack, gopacket.Payload(payload))
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, opts, stack...); err != nil {
			t.Fatal(err)
		}
		frame := buf.Bytes()

		dec := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
		nl, tl := dec.NetworkLayer(), dec.TransportLayer()
		if nl == nil || tl == nil {
			t.Fatalf("frame %d: gopacket cannot decode its own frame: %v", i, dec)
		}
		wantSrc, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
		wantDst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
		tf := tl.TransportFlow()
		wantSport := uint16(tf.Src().Raw()[0])<<8 | uint16(tf.Src().Raw()[1])
		wantDport := uint16(tf.Dst().Raw()[0])<<8 | uint16(tf.Dst().Raw()[1])

		wantL4 := 0
		for _, l := range dec.Layers() {
			if l.LayerType() == tl.LayerType() {
				break
			}
			wantL4 += len(l.LayerContents())
		}
		// Serialization pads to the Ethernet minimum; the parser trims it.
		wantLen := wantL4 + len(tl.LayerContents()) + len(tl.LayerPayload())

		p := pipelinetest.Packet(frame)
		if port := e.Push(0, p); port != portOut {
			t.Fatalf("frame %d: left by %d (%v)\n%v", i, port, p.Reason, dec)
		}
		fl := p.Flow
		if fl.Src != wantSrc.As16() || fl.Dst != wantDst.As16() || fl.SrcPort != wantSport || fl.DstPort != wantDport ||
			fl.Proto != uint8(proto) || int(p.L4) != wantL4 || p.Len() != wantLen {
			t.Fatalf("frame %d: flow %+v L4 %d Len %d\ngopacket: %v", i, fl, p.L4, p.Len(), dec)
		}
	}
}

func fill(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}
