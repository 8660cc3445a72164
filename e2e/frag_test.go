package e2e_test

import (
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/e2e/lab"
)

// fragSeen is an IPv4 packet from the client that a backend received
// GRE-encapsulated.
type fragSeen struct {
	backend      string
	id, frag     uint16 // IPv4 ID; flags and offset
	sport, dport uint16 // 0 in a later fragment
}

// clientInner decodes p, an IPv4 GRE packet arriving at a backend, into
// the client's packet it carries.
func clientInner(p []byte, client [4]byte) (fragSeen, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_GRE {
		return fragSeen{}, false
	}
	in := p[int(p[0]&0xf)*4+4:]
	if len(in) < 20 || in[0]>>4 != 4 || [4]byte(in[12:16]) != client {
		return fragSeen{}, false
	}
	s := fragSeen{id: binary.BigEndian.Uint16(in[4:]), frag: binary.BigEndian.Uint16(in[6:]) & 0x3fff}
	if l4 := in[int(in[0]&0xf)*4:]; s.frag&0x1fff == 0 && len(l4) >= 4 {
		s.sport, s.dport = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	}
	return s, true
}

// waitCount waits until count, called under mu, reaches want or within
// passes.
func waitCount(mu *sync.Mutex, count func() int, want int, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		mu.Lock()
		n := count()
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rawIPv4 is an IPv4 packet from src to dst of protocol TCP with the given
// ID and flags/offset field; the kernel fills in the checksum.
func rawIPv4(src, dst [4]byte, id, frag uint16, payload []byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	b[0], b[8], b[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(b[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], frag)
	copy(b[12:], src[:])
	copy(b[16:], dst[:])
	return append(b, payload...)
}

// tcpSegment is a TCP ACK from sport to dport with n bytes of data.
func tcpSegment(sport, dport uint16, n int) []byte {
	b := make([]byte, 20+n)
	binary.BigEndian.PutUint16(b, sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	b[12], b[13] = 0x50, 0x10
	return b
}

// TestFragmentsThroughXLB: TCP segments sent by the client in two IPv4
// fragments reach, both fragments, the backend that receives the
// unfragmented packets of their flow; a segment fragmented towards a port
// the VIP does not serve (22) reaches no backend. The client sends raw IP
// (Linux never fragments TCP itself), 12 flows from one address, so that
// steering fragments on the 3-tuple would put them all on one backend.
func TestFragmentsThroughXLB(t *testing.T) {
	l, x := setup(t, "GREEncap")
	client, vip := l.Client().Addr4.As4(), l.VIP().As4()

	var (
		mu   sync.Mutex
		seen []fragSeen
	)
	stop := watchBackends(t, l, func(backend string, p []byte) {
		if s, ok := clientInner(p, client); ok {
			s.backend = backend
			mu.Lock()
			seen = append(seen, s)
			mu.Unlock()
		}
	})

	const flows = 12
	var pkts [][]byte
	for i := range uint16(flows) {
		sport := 46000 + i
		pkts = append(pkts, rawIPv4(client, vip, 0x1000+i, 0, tcpSegment(sport, 80, 0)))
		seg := tcpSegment(sport, 80, 24)
		pkts = append(pkts, rawIPv4(client, vip, 0x2000+i, 0x2000, seg[:24]), rawIPv4(client, vip, 0x2000+i, 3, seg[24:]))
	}
	seg := tcpSegment(46100, 22, 24)
	pkts = append(pkts, rawIPv4(client, vip, 0x3000, 0x2000, seg[:24]), rawIPv4(client, vip, 0x3000, 3, seg[24:]))
	if err := l.Do(l.Client().NS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, p := range pkts {
			if err := unix.Sendto(fd, p, 0, &unix.SockaddrInet4{Addr: vip}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	waitCount(&mu, func() int { return len(seen) }, 3*flows, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // for anything that should not come
	stop()

	type key struct{ id, frag uint16 }
	at := map[key][]string{}
	for _, s := range seen {
		at[key{s.id, s.frag}] = append(at[key{s.id, s.frag}], s.backend)
	}
	used := map[string]bool{}
	for i := range uint16(flows) {
		whole, first, later := at[key{0x1000 + i, 0}], at[key{0x2000 + i, 0x2000}], at[key{0x2000 + i, 3}]
		if len(whole) != 1 || len(first) != 1 || len(later) != 1 || first[0] != whole[0] || later[0] != whole[0] {
			t.Errorf("flow %d: unfragmented packet at %v, first fragment at %v, later fragment at %v; want each once, at one backend", i, whole, first, later)
			continue
		}
		used[whole[0]] = true
	}
	if len(used) < 2 {
		t.Errorf("the %d flows all went to %v: the test needs flows on several backends", flows, used)
	}
	if got := append(at[key{0x3000, 0x2000}], at[key{0x3000, 3}]...); len(got) != 0 {
		t.Errorf("fragments to port 22, which the VIP does not serve, reached %v", got)
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	if strings.Contains(out, "parse.fragment_without_first") || !strings.Contains(out, "xlb_parse_fragment_table_followed_total") {
		t.Errorf("xlbd's counters: want every later fragment to have followed its first:\n%s", out)
	}
}

// watchBackends captures the frames that reach every backend's interface,
// calling seen with the backend's name for each, from one goroutine per
// backend, until the returned stop returns (at the test's end at the
// latest).
func watchBackends(t *testing.T, l *lab.Lab, seen func(backend string, frame []byte)) (stop func()) {
	t.Helper()
	var stops []func()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			for _, s := range stops {
				s()
			}
		})
	}
	t.Cleanup(stop)
	for _, be := range l.Backends() {
		var c *lab.Capture
		if err := l.Do(be.NS, func() (err error) { c, err = lab.OpenCapture(be.Iface); return }); err != nil {
			t.Fatal(err)
		}
		done, finished := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(finished)
			for {
				select {
				case <-done:
					return
				default:
				}
				_, _ = c.Next(100*time.Millisecond, func(p []byte) bool {
					seen(be.Name, p)
					return false
				})
			}
		}()
		stops = append(stops, func() { close(done); <-finished; c.Close() })
	}
	return stop
}
