package bfd

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopPair returns a socket on 127.0.0.1 that reports each packet's TTL
// (as the Speaker's receive socket does, on an ephemeral port so that no
// root or namespace is needed) and a socket connected to it sending with
// TTL 255 from 127.0.0.2.
func loopPair(tb testing.TB) (rx, tx *net.UDPConn) {
	tb.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return setsockopt(rc, unix.IPPROTO_IP, unix.IP_RECVTTL, 1)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	rx = pc.(*net.UDPConn)
	tb.Cleanup(func() { rx.Close() })
	d := net.Dialer{
		LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)},
		Control: func(_, _ string, rc syscall.RawConn) error {
			return setsockopt(rc, unix.IPPROTO_IP, unix.IP_TTL, ttl)
		},
	}
	c, err := d.Dial("udp4", rx.LocalAddr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tx = c.(*net.UDPConn)
	tb.Cleanup(func() { tx.Close() })
	return rx, tx
}

// upSpeaker returns a Speaker without goroutines holding one Up session
// with 127.0.0.2 whose local discriminator is 2, as upPacket expects.
func upSpeaker() *Speaker {
	sp := newSpeaker(Options{})
	p, err := Peer{Remote: netip.MustParseAddr("127.0.0.2"), MinTx: 100 * time.Millisecond,
		MinRx: 50 * time.Millisecond}.check()
	if err != nil {
		panic(err)
	}
	s := newSession(p, 2, time.Now())
	s.state = Up
	s.remoteDiscr = 1
	sp.byDiscr[2] = s
	sp.byAddr[p.Remote] = s
	return sp
}

// The steady state of a session, a packet from an Up peer read from a
// socket and applied, allocates nothing.
func TestReceiveAllocs(t *testing.T) {
	sp := upSpeaker()
	rx, tx := loopPair(t)
	buf, oob := make([]byte, 256), make([]byte, 64)
	n := testing.AllocsPerRun(200, func() {
		if _, err := tx.Write(upPacket); err != nil {
			t.Fatal(err)
		}
		if err := sp.readOne(rx, buf, oob); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per received packet, want 0", n)
	}
	if st := sp.Stats(); st.Received < 200 || st.Dropped["ttl"] != 0 {
		t.Errorf("stats %+v: want every packet received, none dropped for TTL", st)
	}
}

// A packet sent with the default TTL (64) is counted and dropped.
func TestReceiveWrongTTL(t *testing.T) {
	sp := upSpeaker()
	rx, tx := loopPair(t)
	rc, err := tx.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := setsockopt(rc, unix.IPPROTO_IP, unix.IP_TTL, 64); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Write(upPacket); err != nil {
		t.Fatal(err)
	}
	if err := sp.readOne(rx, make([]byte, 256), make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); st.Received != 0 || st.Dropped["ttl"] != 1 {
		t.Fatalf("stats %+v: want one drop for TTL", st)
	}
}

// Every kind of bad input lands on its counter and changes nothing.
func TestInputDrops(t *testing.T) {
	ttl255 := cmsg(unix.IPPROTO_IP, unix.IP_TTL, 255)
	peer := netip.MustParseAddr("127.0.0.2")
	other := netip.MustParseAddr("127.0.0.3")
	unknownDiscr := append([]byte(nil), upPacket...)
	unknownDiscr[11] = 9
	downNoDiscr := append([]byte(nil), upPacket...)
	downNoDiscr[1] = byte(Down) << 6
	copy(downNoDiscr[8:12], []byte{0, 0, 0, 0})
	for _, tc := range []struct {
		name string
		b    []byte
		oob  []byte
		src  netip.Addr
		want string
	}{
		{"no TTL", upPacket, nil, peer, "ttl"},
		{"short", upPacket[:10], ttl255, peer, "short"},
		{"unknown discriminator", unknownDiscr, ttl255, peer, "unknown-discriminator"},
		{"right discriminator, other address", upPacket, ttl255, other, "unknown-peer"},
		{"no discriminator, unknown address", downNoDiscr, ttl255, other, "unknown-peer"},
	} {
		sp := upSpeaker()
		sp.input(tc.b, tc.oob, tc.src, time.Now())
		st := sp.Stats()
		if st.Dropped[tc.want] != 1 || st.Received != 0 {
			t.Errorf("%s: stats %+v, want one drop as %s", tc.name, st, tc.want)
		}
		if s := sp.byDiscr[2]; s.state != Up || s.remoteDiscr != 1 {
			t.Errorf("%s: session changed to %s, remote discriminator %d", tc.name, s.state, s.remoteDiscr)
		}
	}
}

func BenchmarkReceive(b *testing.B) {
	sp := upSpeaker()
	rx, tx := loopPair(b)
	buf, oob := make([]byte, 256), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tx.Write(upPacket); err != nil {
			b.Fatal(err)
		}
		if err := sp.readOne(rx, buf, oob); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInput(b *testing.B) {
	sp := upSpeaker()
	oob := cmsg(unix.IPPROTO_IP, unix.IP_TTL, 255)
	src := netip.MustParseAddr("127.0.0.2")
	b.ReportAllocs()
	for b.Loop() {
		sp.input(upPacket, oob, src, time.Now())
	}
}
