package e2e_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// ethIPv4 is an Ethernet frame from src to dst carrying the IPv4 packet p,
// whose header checksum it computes (a packet socket sends what it gets).
func ethIPv4(dst, src net.HardwareAddr, p []byte) []byte {
	b := append(append(append([]byte{}, dst...), src...), 0x08, 0x00)
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

// reassembled sums the IPv4 datagrams the backends' kernels reassembled
// (ReasmOKs in /proc/net/snmp of each namespace).
func reassembled(t *testing.T, l *lab.Lab) int {
	t.Helper()
	total := 0
	for _, be := range l.Backends() {
		if err := l.Do(be.NS, func() error {
			// thread-self: the namespace of the thread Do switched.
			b, err := os.ReadFile("/proc/thread-self/net/snmp")
			if err != nil {
				return err
			}
			var names []string
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) == 0 || f[0] != "Ip:" {
					continue
				}
				if names == nil {
					names = f
					continue
				}
				for k, n := range names {
					if n == "ReasmOKs" && k < len(f) {
						v, err := strconv.Atoi(f[k])
						if err != nil {
							return err
						}
						total += v
					}
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
// as the router's ECMP may do (it hashes fragments on the 3-tuple). With
// FragRedirect every fragment reaches the backend of its flow's
// unfragmented packets, the datagram whole there; without it, later
// fragments meet a node that never saw their first and are lost.
func TestFragRedirect(t *testing.T) {
	const nodes, flows = 3, 12
	testenv.RequireRoot(t)
	b := binaries(t)
	l := lab.New(t, lab.Topology{LBNodes: nodes, Backends: []string{"be1", "be2", "be3"}})
	if err := l.StartBackends(b["xlb-backend"]); err != nil {
		t.Fatal(err)
	}
	vip := l.VIP().As4()
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
	// Flow i comes from its own client address (the node a fragment is
	// sent to depends on it) and its packets to nodes i, i+1 and i+2.
	clientOf := func(i int) [4]byte { return [4]byte{10, 90, 1, byte(100 + i)} }

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
			var (
				mu   sync.Mutex
				seen = map[[4]byte][]fragSeen{}
			)
			var stops []func()
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
							for i := range flows {
								if s, ok := clientInner(p, clientOf(i)); ok {
									s.backend = be.Name
									mu.Lock()
									seen[clientOf(i)] = append(seen[clientOf(i)], s)
									mu.Unlock()
								}
							}
							return false
						})
					}
				}()
				stops = append(stops, func() { close(done); <-finished; c.Close() })
			}

			// Two rounds: the flows' unfragmented packets and first
			// fragments, then, once the backends have them, the later
			// fragments, which would otherwise race their first through
			// the node that redirects it and be dropped as orphans where
			// they meet (Parse5Tuple's policy, not this test's subject).
			var rounds [2][][]byte
			for i := range flows {
				client, sport := clientOf(i), uint16(47000+i)
				to := func(k int) net.HardwareAddr { return l.LB((i + k) % nodes).MAC }
				seg := tcpSegment(sport, 80, 24)
				rounds[0] = append(rounds[0],
					ethIPv4(to(0), r.BridgeMAC, rawIPv4(client, vip, 0x1000, 0, tcpSegment(sport, 80, 0))),
					ethIPv4(to(1), r.BridgeMAC, rawIPv4(client, vip, 0x2000, 0x2000, seg[:24])))
				rounds[1] = append(rounds[1], ethIPv4(to(2), r.BridgeMAC, rawIPv4(client, vip, 0x2000, 3, seg[24:])))
			}
			wait := func(want int) {
				deadline := time.Now().Add(3 * time.Second)
				for {
					mu.Lock()
					n := 0
					for _, s := range seen {
						n += len(s)
					}
					mu.Unlock()
					if n >= want || time.Now().After(deadline) {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			reasm := reassembled(t, l)
			for k, frames := range rounds {
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
				wait((k + 2) * flows)
			}
			time.Sleep(300 * time.Millisecond) // for anything that should not come
			reasm = reassembled(t, l) - reasm
			for _, stop := range stops {
				stop()
			}
			var counters []string
			for i, x := range xs {
				out, err := x.Stop()
				if err != nil {
					t.Fatalf("xlbd on %s: %v\n%s", l.LB(i).Name, err, x.Log())
				}
				counters = append(counters, out)
			}

			whole, used := 0, map[string]bool{}
			for i := range flows {
				at := map[uint16][]string{}
				for _, s := range seen[clientOf(i)] {
					at[s.frag] = append(at[s.frag], s.backend)
				}
				u, first, later := at[0], at[0x2000], at[3]
				if len(u) == 1 && len(first) == 1 && len(later) == 1 && first[0] == u[0] && later[0] == u[0] {
					whole++
					used[u[0]] = true
				} else if redirect {
					t.Errorf("flow %d: unfragmented packet at %v, first fragment at %v, later fragment at %v; want each once, at one backend", i, u, first, later)
				}
			}
			all := strings.Join(counters, "\n")
			if !redirect {
				if whole == flows {
					t.Errorf("without FragRedirect, all %d datagrams arrived whole at their flow's backend: the test does not reproduce the problem", flows)
				}
				t.Logf("without FragRedirect: %d of %d datagrams whole at their flow's backend, %d reassembled", whole, flows, reasm)
				return
			}
			if len(used) < 2 {
				t.Errorf("the %d flows all went to %v: the test needs flows on several backends", flows, used)
			}
			if strings.Contains(all, "parse.fragment_without_first") || strings.Contains(all, "fragredirect.unresolved") {
				t.Errorf("xlbd's counters: a fragment was lost:\n%s", all)
			}
			if reasm != flows {
				t.Errorf("the backends reassembled %d datagrams, want %d", reasm, flows)
			}
			t.Logf("with FragRedirect: %d of %d datagrams whole at their flow's backend, on %d backends, %d reassembled", whole, flows, len(used), reasm)
		})
	}
}
