package e2e_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/e2e/lab"
	"github.com/xlbproject/xlb/internal/testenv"
)

// fragRedirectConfig is examples/lab/lab.hcl for LB node i of n, with
// FragRedirect in front of Parse5Tuple when redirect is set.
func fragRedirectConfig(t *testing.T, l *lab.Lab, i, n int, redirect bool) string {
	t.Helper()
	src, err := os.ReadFile("../examples/lab/lab.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, want := range []string{`element "Parse5Tuple" "parse" {}`, `connect = default_graph()`, `source4 = "10.90.2.10"`} {
		if !strings.Contains(s, want) {
			t.Fatalf("examples/lab/lab.hcl no longer has %s; update this test", want)
		}
	}
	s = strings.Replace(s, `source4 = "10.90.2.10"`, fmt.Sprintf("source4 = %q", l.LB(i).Addr4), 1)
	if redirect {
		var nodes []string
		for k := range n {
			nodes = append(nodes, fmt.Sprintf("{ name = %q, address = %q }", l.LB(k).Name, l.LB(k).Addr4))
		}
		s = strings.Replace(s, `element "Parse5Tuple" "parse" {}`, fmt.Sprintf(`element "FragRedirect" "frag" {
    interface = var.interface
    self      = %q
    nodes     = [%s]
  }
  element "TxXDP" "peers" {
    interface = var.interface
  }
  element "Parse5Tuple" "parse" {}`, l.LB(i).Name, strings.Join(nodes, ", ")), 1)
		s = strings.Replace(s, `connect = default_graph()`, `connect = [
    "rx -> frag -> parse -> ct",
    "frag.redirect -> peers",
    "ct.hit -> encap -> tx",
    "encap.icmp -> tx",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
    "encap.bad -> drop",
  ]`, 1)
	}
	path := filepath.Join(t.TempDir(), "lab.hcl")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ethFrame is an Ethernet frame from src to dst carrying the IP packet p;
// an IPv4 header's checksum is computed (a packet socket sends what it
// gets).
func ethFrame(dst, src net.HardwareAddr, p []byte) []byte {
	b := append(append(append([]byte{}, dst...), src...), 0x86, 0xdd)
	if p[0]>>4 == 6 {
		return append(b, p...)
	}
	b[12], b[13] = 0x08, 0x00
	ip := append([]byte{}, p...)
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return append(b, ip...)
}

// rawIPv6 is an IPv6 TCP packet from src to dst; with frag >= 0 a fragment
// (frag: offset | M) of the datagram with identification id.
func rawIPv6(src, dst netip.Addr, id uint32, frag int, payload []byte) []byte {
	b := make([]byte, 40, 48+len(payload))
	b[0], b[6], b[7] = 0x60, unix.IPPROTO_TCP, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	if frag >= 0 {
		b[6] = unix.IPPROTO_FRAGMENT
		fh := []byte{unix.IPPROTO_TCP, 0, byte(frag >> 8), byte(frag), 0, 0, 0, 0}
		binary.BigEndian.PutUint32(fh[4:], id)
		b = append(b, fh...)
	}
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// Kinds of the packets of one flow in TestFragRedirect.
const (
	whole = iota
	firstFrag
	laterFrag
)

// innerKind decodes p, an IPv4 GRE packet arriving at a backend, and
// returns the source of the client packet it carries and whether that is
// unfragmented, a first or a later fragment.
func innerKind(p []byte) (netip.Addr, int, bool) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_GRE {
		return netip.Addr{}, 0, false
	}
	in := p[int(p[0]&0xf)*4+4:]
	switch {
	case len(in) >= 20 && in[0]>>4 == 4:
		src := netip.AddrFrom4([4]byte(in[12:16]))
		switch fo := binary.BigEndian.Uint16(in[6:]) & 0x3fff; {
		case fo == 0:
			return src, whole, true
		case fo&0x1fff == 0:
			return src, firstFrag, true
		}
		return src, laterFrag, true
	case len(in) >= 48 && in[0]>>4 == 6:
		src := netip.AddrFrom16([16]byte(in[8:24]))
		if in[6] != unix.IPPROTO_FRAGMENT {
			return src, whole, true
		}
		if binary.BigEndian.Uint16(in[42:])>>3 == 0 {
			return src, firstFrag, true
		}
		return src, laterFrag, true
	}
	return netip.Addr{}, 0, false
}

// arrival is a client packet seen at a backend: where, and whether whole,
// a first or a later fragment.
type arrival struct {
	backend string
	kind    int
}

// arrivals records, by client address, the packets that reach the
// backends.
type arrivals struct {
	mu   sync.Mutex
	seen map[netip.Addr][]arrival
	n    int
}

// watchArrivals records every client packet that reaches a backend of l
// until the returned stop.
func watchArrivals(t *testing.T, l *lab.Lab) (*arrivals, func()) {
	a := &arrivals{seen: map[netip.Addr][]arrival{}}
	stop := watchBackends(t, l, func(backend string, p []byte) {
		if src, kind, ok := innerKind(p); ok {
			a.mu.Lock()
			a.seen[src] = append(a.seen[src], arrival{backend, kind})
			a.n++
			a.mu.Unlock()
		}
	})
	return a, stop
}

// wait waits up to within for n arrivals in all.
func (a *arrivals) wait(n int, within time.Duration) {
	waitCount(&a.mu, func() int { return a.n }, n, within)
}

// flow reports the backend of client's packets when its unfragmented
// packet, first and later fragment each arrived once, at that one
// backend; otherwise "" and where each arrived.
func (a *arrivals) flow(client netip.Addr) (string, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	at := map[int][]string{}
	for _, x := range a.seen[client] {
		at[x.kind] = append(at[x.kind], x.backend)
	}
	u, first, later := at[whole], at[firstFrag], at[laterFrag]
	if len(u) == 1 && len(first) == 1 && len(later) == 1 && first[0] == u[0] && later[0] == u[0] {
		return u[0], ""
	}
	return "", fmt.Sprintf("unfragmented packet at %v, first fragment at %v, later fragment at %v; want each once, at one backend", u, first, later)
}

// flowPackets are a flow's packets in the fragment tests: an unfragmented
// TCP segment from client:sport to vip:80, and the first and the later
// fragment of another segment of the flow (IPv4 ID or IPv6
// identification 0x2000; 24 bytes, the TCP header and 4 of data, in the
// first).
func flowPackets(client, vip netip.Addr, sport uint16) [3][]byte {
	seg := tcpSegment(sport, 80, 24)
	if client.Is4() {
		c, v := client.As4(), vip.As4()
		return [3][]byte{rawIPv4(c, v, 0x1000, 0, tcpSegment(sport, 80, 0)),
			rawIPv4(c, v, 0x2000, 0x2000, seg[:24]), rawIPv4(c, v, 0x2000, 3, seg[24:])}
	}
	return [3][]byte{rawIPv6(client, vip, 0, -1, tcpSegment(sport, 80, 0)),
		rawIPv6(client, vip, 0x2000, 1, seg[:24]), rawIPv6(client, vip, 0x2000, 24, seg[24:])}
}

// clientOf is the source address of flow i of a family in the fragment
// tests: one each, in the client's subnet, so that the flows' 3-tuples
// (and the nodes their fragments go to) differ.
func clientOf(family, i int) netip.Addr {
	if family == 6 {
		return netip.AddrFrom16([16]byte{0xfd, 0, 0x90, 1, 14: 1, 15: byte(i)})
	}
	return netip.AddrFrom4([4]byte{10, 90, 1, byte(100 + i)})
}

// reassembled sums the datagrams the backends' kernels reassembled, by
// family: ReasmOKs of /proc/net/snmp, Ip6ReasmOKs of /proc/net/snmp6.
func reassembled(t *testing.T, l *lab.Lab) map[int]int {
	t.Helper()
	total := map[int]int{}
	for _, be := range l.Backends() {
		if err := l.Do(be.NS, func() error {
			// thread-self: the namespace of the thread Do switched.
			b4, err := os.ReadFile("/proc/thread-self/net/snmp")
			if err != nil {
				return err
			}
			var names []string
			for _, line := range strings.Split(string(b4), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 || f[0] != "Ip:" {
					continue
				}
				if names == nil {
					names = f
					continue
				}
				if k := slices.Index(names, "ReasmOKs"); k > 0 && k < len(f) {
					v, _ := strconv.Atoi(f[k])
					total[4] += v
				}
			}
			b6, err := os.ReadFile("/proc/thread-self/net/snmp6")
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b6), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "Ip6ReasmOKs" {
					v, _ := strconv.Atoi(f[1])
					total[6] += v
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// TestFragRedirect: three LB nodes; from the router, each flow's
// unfragmented packet goes to one node, the first fragment of a TCP
// segment of the flow to the second and its later fragment to the third,
// as the router's ECMP may do (it hashes fragments on the 3-tuple), to
// the IPv4 and the IPv6 VIP. With FragRedirect every fragment reaches the
// backend of its flow's unfragmented packets and the backend's kernel
// reassembles the datagram; without it, later fragments meet a node that
// never saw their first and are lost.
func TestFragRedirect(t *testing.T) {
	const nodes, flows = 3, 12
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{LBNodes: nodes, Backends: []string{"be1", "be2", "be3"}, IPv6: true})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	r := l.Router()
	br, err := func() (ifindex int, err error) {
		err = l.Do(r.NS, func() error {
			ifc, err := net.InterfaceByName(r.Bridge)
			if err == nil {
				ifindex = ifc.Index
			}
			return err
		})
		return
	}()
	if err != nil {
		t.Fatal(err)
	}
	// Flow i of a family comes from its own client address (the node a
	// fragment is sent to depends on it) and its packets go to nodes i,
	// i+1 and i+2.
	families := []int{4, 6}

	for _, redirect := range []bool{true, false} {
		t.Run(map[bool]string{true: "redirect", false: "without"}[redirect], func(t *testing.T) {
			var xs []*lab.XLBD
			for i := range nodes {
				x, err := l.StartXLBD(l.LB(i), b["xlbd"], fragRedirectConfig(t, l, i, nodes, redirect), "-var", "interface="+l.LB(i).Iface, "-pin=false")
				if err != nil {
					t.Fatal(err)
				}
				xs = append(xs, x)
			}
			seen, stop := watchArrivals(t, l)

			// One round, each flow's packets back to back: a later
			// fragment sent to its chosen node overtakes a first fragment
			// redirected to it, and waits in Parse5Tuple's hold.
			var frames [][]byte
			for _, family := range families {
				vip := map[int]netip.Addr{4: l.VIP(), 6: l.VIP6()}[family]
				for i := range flows {
					to := func(k int) net.HardwareAddr { return l.LB((i + k) % nodes).MAC }
					pkts := flowPackets(clientOf(family, i), vip, uint16(47000+i))
					for k, p := range pkts {
						frames = append(frames, ethFrame(to(k), r.BridgeMAC, p))
					}
				}
			}
			reasm := reassembled(t, l)
			if err := l.Do(r.NS, func() error {
				fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				for _, f := range frames {
					if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: br, Halen: 6}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			seen.wait(len(frames), 3*time.Second)
			time.Sleep(300 * time.Millisecond) // for anything that should not come
			after := reassembled(t, l)
			stop()
			var counters []string
			for i, x := range xs {
				out, err := x.Stop()
				if err != nil {
					t.Fatalf("xlbd on %s: %v\n%s", l.LB(i).Name, err, x.Log())
				}
				counters = append(counters, out)
			}

			for _, family := range families {
				wholeAt, used := 0, map[string]bool{}
				for i := range flows {
					if be, why := seen.flow(clientOf(family, i)); be != "" {
						wholeAt++
						used[be] = true
					} else if redirect {
						t.Errorf("IPv%d flow %d: %s", family, i, why)
					}
				}
				re := after[family] - reasm[family]
				if !redirect {
					if wholeAt == flows || re == flows {
						t.Errorf("without FragRedirect, all %d IPv%d datagrams arrived whole at their flow's backend: the test does not reproduce the problem", flows, family)
					}
					t.Logf("without FragRedirect: IPv%d: %d of %d datagrams whole at their flow's backend, %d reassembled", family, wholeAt, flows, re)
					continue
				}
				if len(used) < 2 {
					t.Errorf("the %d IPv%d flows all went to %v: the test needs flows on several backends", flows, family, used)
				}
				if re != flows {
					t.Errorf("the backends reassembled %d IPv%d datagrams, want %d", re, family, flows)
				}
				t.Logf("with FragRedirect: IPv%d: %d of %d datagrams whole at their flow's backend, on %d backends, %d reassembled", family, wholeAt, flows, len(used), re)
			}
			all := strings.Join(counters, "\n")
			if redirect && (strings.Contains(all, "parse.fragment_without_first") || strings.Contains(all, "fragredirect.unresolved")) {
				t.Errorf("xlbd's counters: a fragment was lost:\n%s", all)
			}
			released := 0
			for _, m := range regexp.MustCompile(`xlb_parse_fragment_hold_released_total (\d+)`).FindAllStringSubmatch(all, -1) {
				n, _ := strconv.Atoi(m[1])
				released += n
			}
			t.Logf("later fragments that overtook their first and waited for it: %d", released)
		})
	}
}

// TestClusterFragments runs examples/cluster/cluster.hcl, FragRedirect
// included, on the three nodes of the cluster lab. The client sends, for
// 12 flows to each web VIP (a source address each), an unfragmented TCP
// segment and a segment in two fragments; the router's BIRD routes them by
// ECMP, which hashes the unfragmented packets on the 5-tuple and the
// fragments on the 3-tuple, so a flow's fragments and its other packets
// reach different nodes, and FragRedirect sends fragments on to a third.
// Every datagram must reach its flow's backend whole (the backends'
// kernels reassemble all of them) with no fragment lost on the way, and
// some must have been redirected.
func TestClusterFragments(t *testing.T) {
	const flows = 12
	c := newCluster(t, lab.BGP{}, clusterConfig(t))
	seen, stop := watchArrivals(t, c.l)
	reasm := reassembled(t, c.l)

	var pkts [][]byte
	for _, family := range []int{4, 6} {
		vip := map[int]netip.Addr{4: web4.Addr(), 6: web6.Addr()}[family]
		for i := range flows {
			p := flowPackets(clientOf(family, i), vip, uint16(48000+i))
			pkts = append(pkts, p[:]...)
		}
	}
	// One round: a datagram's fragments take one path (the router hashes
	// them alike, a node redirects them alike), in order.
	if err := c.l.Do(c.l.Client().NS, func() error {
		fds := map[bool]int{}
		for _, v6 := range []bool{false, true} {
			family := map[bool]int{false: unix.AF_INET, true: unix.AF_INET6}[v6]
			fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			fds[v6] = fd
		}
		for _, p := range pkts {
			var to unix.Sockaddr = &unix.SockaddrInet4{Addr: web4.Addr().As4()}
			if p[0]>>4 == 6 {
				to = &unix.SockaddrInet6{Addr: web6.Addr().As16()}
			}
			if err := unix.Sendto(fds[p[0]>>4 == 6], p, 0, to); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	seen.wait(len(pkts), 5*time.Second)
	time.Sleep(300 * time.Millisecond) // for anything that should not come
	after := reassembled(t, c.l)
	stop()

	for _, family := range []int{4, 6} {
		used := map[string]bool{}
		for i := range flows {
			be, why := seen.flow(clientOf(family, i))
			if be == "" {
				t.Errorf("IPv%d flow %d: %s", family, i, why)
			}
			used[be] = true
		}
		if len(used) < 2 {
			t.Errorf("the %d IPv%d flows all went to %v: the test needs flows on several backends", flows, family, used)
		}
		if re := after[family] - reasm[family]; re != flows {
			t.Errorf("the backends reassembled %d IPv%d datagrams, want %d", re, family, flows)
		}
	}
	redirected := 0
	for i := range 3 {
		out, err := c.nodes[i].Stop()
		if err != nil {
			t.Fatalf("xlbd on %s: %v\n%s", c.l.LB(i).Name, err, c.nodes[i].Log())
		}
		// Lost fragments, or fragments sent back and forth (the nodes'
		// lists are the same: none may loop).
		if bad := regexp.MustCompile(`parse\.fragment_without_first|fragredirect\.unresolved|xlb_fragredirect_looped_total [1-9]`).FindString(out); bad != "" {
			t.Errorf("xlbd on %s: %s in its counters:\n%s", c.l.LB(i).Name, bad, out)
		}
		m := regexp.MustCompile(`xlb_fragredirect_redirected_total (\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("xlbd on %s runs no FragRedirect (examples/cluster/cluster.hcl):\n%s", c.l.LB(i).Name, out)
		}
		n, _ := strconv.Atoi(m[1])
		redirected += n
	}
	if redirected == 0 {
		t.Errorf("no fragment was redirected: every datagram's fragments reached the node chosen for them, the test shows nothing")
	}
	t.Logf("cluster: %d datagrams to each web VIP, fragmented, through the router's ECMP: each reached its flow's backend whole, %d fragments redirected between nodes", flows, redirected)
}
