package snat

import (
	"testing"

	"github.com/xlbproject/xlb/control/snapshot"
	"github.com/xlbproject/xlb/pipeline"
)

// FuzzPush: whatever the flow, a packet leaves by reply naming the real
// that owns its port's range on its VIP's address, by bad with
// snat.norange only when it is to that address on a port of no range and
// of no VIP, or by out unchanged.
func FuzzPush(f *testing.F) {
	web, plain := webAddr.As16(), plainAddr.As16()
	f.Add(web[:], uint16(80), uint16(1024), uint8(6), uint8(0))  // be1's range
	f.Add(web[:], uint16(80), uint16(3023), uint8(6), uint8(0))  // be2's last port
	f.Add(web[:], uint16(1), uint16(80), uint8(6), uint8(0))     // the service port
	f.Add(web[:], uint16(80), uint16(2500), uint8(6), uint8(0))  // nobody's range
	f.Add(web[:], uint16(80), uint16(65535), uint8(6), uint8(0)) // past the ranges
	f.Add(web[:], uint16(80), uint16(1024), uint8(17), uint8(0)) // UDP on a TCP VIP
	f.Add(web[:], uint16(0), uint16(0), uint8(6), pipeline.FlowFragment)
	f.Add(plain[:], uint16(80), uint16(1024), uint8(6), uint8(0)) // no SNAT
	e := newTest(f, nil)
	s := testSnapshot()
	f.Fuzz(func(t *testing.T, dst []byte, srcPort, dstPort uint16, proto, flags uint8) {
		var fl pipeline.Flow
		copy(fl.Dst[:], dst)
		fl.SrcPort, fl.DstPort, fl.Proto, fl.Flags, fl.Family = srcPort, dstPort, proto, flags, 4
		port, p := push(e, fl, 1)
		if p.Flow != fl {
			t.Fatalf("flow changed: %+v from %+v", p.Flow, fl)
		}
		vip, snat := s.SNATVIP(&fl.Dst)
		switch port {
		case portReply:
			owner := s.VIPs[vip].SNAT.Owner(dstPort)
			if !snat || owner == snapshot.NoReal || p.VIP != vip || p.Backend != owner || p.Epoch != s.Reals.At(owner).Epoch {
				t.Fatalf("reply to VIP %d real %d epoch %d for %+v", p.VIP, p.Backend, p.Epoch, fl)
			}
		case portBad:
			_, served := s.LookupVIP(&fl)
			if !snat || served || fl.Proto != 6 || p.Reason != reasonNoRange || s.VIPs[vip].SNAT.Owner(dstPort) != snapshot.NoReal {
				t.Fatalf("dropped (%v) %+v", p.Reason, fl)
			}
		case portOut:
			if p.Reason != pipeline.ReasonNone || p.Backend != 0 || p.VIP != 0 {
				t.Fatalf("passed on with metadata %+v", p)
			}
			if snat && fl.Proto == 6 && fl.Flags&pipeline.FlowFragment == 0 && s.VIPs[vip].SNAT.Owner(dstPort) != snapshot.NoReal {
				t.Fatalf("a reply in a range passed on: %+v", fl)
			}
		default:
			t.Fatalf("port %d", port)
		}
	})
}
