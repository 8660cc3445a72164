package lab_test

import (
	"encoding/binary"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
	"golang.org/x/sys/unix"
)

// fakeLB is the smallest possible one-armed load balancer, standing in for
// xlb to prove the lab end to end: it reads frames addressed to a VIP on
// the LB node's eth0 (AF_PACKET), picks a backend by hashing the client's
// address and port, prepends an outer IP header (and GRE), and sends the
// frame to the router's bridge MAC. It never sees replies.
type fakeLB struct {
	fd        int
	ifindex   int
	lb        lab.Node
	routerMAC net.HardwareAddr
	backends  []lab.Node
	gre       bool
	forwarded atomic.Uint64
	replies   atomic.Uint64 // packets from a VIP seen at the LB: DSR broken
	stop      func()        // stops it, as a node that dies
	mu        sync.Mutex
	seen      map[netip.AddrPort]bool // client address and port of every flow forwarded
}

// flows returns the client ends of the flows it forwarded.
func (f *fakeLB) flows() map[netip.AddrPort]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.seen)
}

func startFakeLB(t *testing.T, l *lab.Lab, gre bool) *fakeLB {
	t.Helper()
	return startFakeLBOn(t, l, l.LB(0), gre)
}

// startFakeLBOn runs a fake LB on node lb. Every fake LB picks the same
// backend for a flow, as xlb's nodes do.
func startFakeLBOn(t *testing.T, l *lab.Lab, lb lab.Node, gre bool) *fakeLB {
	t.Helper()
	f := &fakeLB{lb: lb, routerMAC: l.Router().BridgeMAC, backends: l.Backends(), gre: gre, seen: map[netip.AddrPort]bool{}}
	err := l.Do(f.lb.NS, func() error {
		ifi, err := net.InterfaceByName(lab.IfaceEth)
		if err != nil {
			return err
		}
		f.ifindex = ifi.Index
		f.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(f.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); f.run(l) }()
	f.stop = sync.OnceFunc(func() {
		unix.Shutdown(f.fd, unix.SHUT_RDWR) // wakes the blocked recvfrom
		unix.Close(f.fd)
		<-done
	})
	t.Cleanup(f.stop)
	return f
}

func (f *fakeLB) run(l *lab.Lab) {
	buf := make([]byte, 256+65536)
	const head = 256 // room for the outer headers in front of the frame
	for {
		n, from, err := unix.Recvfrom(f.fd, buf[head:], 0)
		if err != nil || n == 0 {
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		frame := buf[head : head+n]
		ip := frame[14:]
		src, dst, seg, ok := tcpOf(ip)
		if !ok {
			continue
		}
		if src == l.VIP() || src == l.VIP6() {
			f.replies.Add(1)
		}
		if dst != l.VIP() && dst != l.VIP6() {
			continue
		}
		h := fnv.New64a()
		h.Write(src.AsSlice())
		h.Write(seg[0:2])
		be := f.backends[h.Sum64()%uint64(len(f.backends))]
		osrc, odst := f.lb.Addr4, be.Addr4
		if dst.Is6() {
			osrc, odst = f.lb.Addr6, be.Addr6
		}
		e := encap{gre: f.gre, outer6: dst.Is6(), inner6: dst.Is6()}
		outer := encapsulate(e, osrc, odst, ip)
		out := ethernet(f.routerMAC, f.lb.MAC, outer)
		if err := unix.Sendto(f.fd, out, 0, &unix.SockaddrLinklayer{Ifindex: f.ifindex, Halen: 6}); err == nil {
			f.forwarded.Add(1)
		}
		f.mu.Lock()
		f.seen[netip.AddrPortFrom(src, binary.BigEndian.Uint16(seg))] = true
		f.mu.Unlock()
	}
}

// TestThroughFakeLB runs real HTTP from the client through a stand-in LB
// (GRE and IPIP, IPv4 and IPv6) to the real backends, replies returning
// directly: everything xlb's e2e tests need from the lab.
func TestThroughFakeLB(t *testing.T) {
	testenv.RequireRoot(t)
	b := binaries(t)
	for _, gre := range []bool{true, false} {
		name := "IPIP"
		if gre {
			name = "GRE"
		}
		t.Run(name, func(t *testing.T) {
			l := lab.New(t, lab.Topology{IPv6: true})
			if err := l.StartBackends(b["xlb-backend"]); err != nil {
				t.Fatal(err)
			}
			f := startFakeLB(t, l, gre)
			for _, url := range []string{"http://" + l.VIP().String() + "/", "http://[" + l.VIP6().String() + "]/"} {
				s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", "60", "-c", "6")
				if err != nil {
					t.Fatal(err)
				}
				if s.OK != 60 || len(s.Backends) != 3 {
					t.Errorf("%s: %+v, want 60 ok spread over 3 backends", url, s)
				}
				s, err = l.RunClient(b["xlb-client"], "-url", url, "-n", "20", "-keepalive")
				if err != nil {
					t.Fatal(err)
				}
				if s.OK != 20 || len(s.Backends) != 1 || s.Connections != 1 {
					t.Errorf("%s keep-alive: %+v, want 20 ok from one backend over one connection", url, s)
				}
			}
			if f.replies.Load() != 0 {
				t.Errorf("the LB saw %d reply packets: not direct server return", f.replies.Load())
			}
			// The last ACKs of closing connections may still be on their
			// way when the client exits.
			var decap uint64
			for range 100 {
				decap = 0
				for _, be := range l.Backends() {
					st, err := l.BackendStats(be.Name)
					if err != nil {
						t.Fatal(err)
					}
					if st.Malformed+st.Unsupported+st.TunErrors+st.TunOut != 0 {
						t.Fatalf("%s: %+v", be.Name, st)
					}
					decap += st.DecapGRE + st.DecapIPIP
				}
				if decap == f.forwarded.Load() {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if decap != f.forwarded.Load() {
				t.Errorf("LB forwarded %d packets, backends decapsulated %d", f.forwarded.Load(), decap)
			}
			t.Logf("forwarded %d packets", f.forwarded.Load())
		})
	}
}
