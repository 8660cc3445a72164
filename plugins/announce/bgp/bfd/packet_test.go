package bfd

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// upPacket is a control packet from a peer whose session is Up.
var upPacket = []byte{
	0x20,                   // version 1, diag 0 (No Diagnostic)
	0xc0,                   // state Up (3<<6), no P F C A D M
	0x03,                   // detect mult 3
	0x18,                   // length 24
	0x00, 0x00, 0x00, 0x01, // my discriminator 1
	0x00, 0x00, 0x00, 0x02, // your discriminator 2
	0x00, 0x01, 0x86, 0xa0, // desired min TX 100000 µs
	0x00, 0x00, 0xc3, 0x50, // required min RX 50000 µs
	0x00, 0x00, 0x00, 0x00, // required min echo RX 0: no echo
}

func TestDecodeFixture(t *testing.T) {
	var c ctrl
	if r := decode(upPacket, &c); r != dropNone {
		t.Fatalf("decode: dropped as %s", r)
	}
	want := ctrl{State: Up, DetectMult: 3, Length: 24, MyDiscr: 1, YourDiscr: 2,
		DesiredMinTx: 100000, RequiredMinRx: 50000}
	if c != want {
		t.Fatalf("decode = %+v, want %+v", c, want)
	}
	var b [controlLen]byte
	if n := c.marshal(b[:]); !bytes.Equal(b[:n], upPacket) {
		t.Fatalf("marshal = % x, want % x", b[:n], upPacket)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []ctrl{
		{State: Down, Diag: DiagDetectExpired, DetectMult: 1, MyDiscr: 0xffffffff, DesiredMinTx: 1000000, RequiredMinRx: 1},
		{State: Init, Poll: true, DetectMult: 255, MyDiscr: 7, YourDiscr: 9, DesiredMinTx: 1, RequiredMinRx: 0xffffffff},
		{State: Up, Final: true, CPI: true, DetectMult: 5, MyDiscr: 7, YourDiscr: 9, RequiredMinEcho: 10},
		{State: AdminDown, Diag: DiagAdminDown, Demand: true, DetectMult: 3, MyDiscr: 3},
	} {
		var b [controlLen]byte
		n := c.marshal(b[:])
		c.Length = controlLen
		var got ctrl
		if r := decode(b[:n], &got); r != dropNone {
			t.Errorf("%+v: dropped as %s", c, r)
			continue
		}
		if got != c {
			t.Errorf("round trip = %+v, want %+v", got, c)
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	// with returns upPacket changed by f.
	with := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), upPacket...))
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want dropReason
	}{
		{"empty", nil, dropShort},
		{"23 bytes", upPacket[:23], dropShort},
		{"version 0", with(func(b []byte) []byte { b[0] = 0x00; return b }), dropVersion},
		{"version 2", with(func(b []byte) []byte { b[0] = 0x40; return b }), dropVersion},
		{"length 23", with(func(b []byte) []byte { b[3] = 23; return b }), dropLength},
		{"length beyond datagram", with(func(b []byte) []byte { b[3] = 25; return b }), dropLength},
		{"auth bit, length 24", with(func(b []byte) []byte { b[1] |= flagAuth; return b }), dropLength},
		{"auth section", with(func(b []byte) []byte {
			b[1] |= flagAuth
			b[3] = 28
			return append(b, 1, 4, 0, 0) // simple password, length 4
		}), dropAuth},
		{"detect mult 0", with(func(b []byte) []byte { b[2] = 0; return b }), dropDetectMult},
		{"multipoint", with(func(b []byte) []byte { b[1] |= flagMultipoint; return b }), dropMultipoint},
		{"my discriminator 0", with(func(b []byte) []byte { copy(b[4:8], []byte{0, 0, 0, 0}); return b }), dropMyDiscr},
		{"your discriminator 0 while Up", with(func(b []byte) []byte { copy(b[8:12], []byte{0, 0, 0, 0}); return b }), dropYourDiscr},
		{"your discriminator 0 while Init", with(func(b []byte) []byte {
			b[1] = byte(Init) << 6
			copy(b[8:12], []byte{0, 0, 0, 0})
			return b
		}), dropYourDiscr},
		{"your discriminator 0 while Down", with(func(b []byte) []byte {
			b[1] = byte(Down) << 6
			copy(b[8:12], []byte{0, 0, 0, 0})
			return b
		}), dropNone},
		{"trailing bytes beyond length", append(append([]byte(nil), upPacket...), 0xde, 0xad), dropNone},
	} {
		var c ctrl
		if got := decode(tc.b, &c); got != tc.want {
			t.Errorf("%s: decode = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	var c ctrl
	if n := testing.AllocsPerRun(100, func() { decode(upPacket, &c) }); n != 0 {
		t.Fatalf("decode: %v allocations, want 0", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(upPacket)                     // valid, Up
	f.Add(upPacket[:23])                // short
	f.Add(append(upPacket, 1, 4, 0, 0)) // trailing auth-like bytes
	f.Fuzz(func(t *testing.T, b []byte) {
		var c ctrl
		if decode(b, &c) != dropNone {
			return
		}
		// Whatever is accepted survives a re-encoding unchanged.
		var out [controlLen]byte
		n := c.marshal(out[:])
		var again ctrl
		if r := decode(out[:n], &again); r != dropNone {
			t.Fatalf("re-encoded packet dropped as %s", r)
		}
		c.Length = controlLen
		if again != c {
			t.Fatalf("re-encoding = %+v, want %+v", again, c)
		}
	})
}

func TestHopLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, -1},
		{"IPv4 TTL 255", cmsg(0 /* IPPROTO_IP */, 2 /* IP_TTL */, 255), 255},
		{"IPv4 TTL 254", cmsg(0, 2, 254), 254},
		{"IPv6 hop limit 255", cmsg(41 /* IPPROTO_IPV6 */, 52 /* IPV6_HOPLIMIT */, 255), 255},
		{"other message", cmsg(0, 8 /* IP_PKTINFO */, 255), -1},
		{"truncated", cmsg(0, 2, 255)[:cmsgLenSize+4], -1},
		{"length beyond buffer", func() []byte { b := cmsg(0, 2, 255); b[0] = 200; return b }(), -1},
	} {
		if got := hopLimit(tc.oob); got != tc.want {
			t.Errorf("%s: hopLimit = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// cmsg builds one control message carrying v as a native-endian int, as
// the kernel writes IP_TTL and IPV6_HOPLIMIT.
func cmsg(level, typ, v int32) []byte {
	hdr := unix.CmsgLen(0)
	b := make([]byte, unix.CmsgSpace(4))
	if cmsgLenSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(unix.CmsgLen(4)))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(unix.CmsgLen(4)))
	}
	binary.NativeEndian.PutUint32(b[cmsgLenSize:], uint32(level))
	binary.NativeEndian.PutUint32(b[cmsgLenSize+4:], uint32(typ))
	binary.NativeEndian.PutUint32(b[hdr:], uint32(v))
	return b
}
