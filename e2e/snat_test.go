package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/e2e/lab"
)

// snatConfig is examples/cluster/cluster.hcl with SNATReturn between
// Parse5Tuple and ConnTrack and ranges of 1024 ports on VIPs web4 and
// web6.
func snatConfig(t *testing.T) string {
	t.Helper()
	return editedClusterConfig(t, "snat.hcl",
		[2]string{`  element "Discard" "drop" {}`, "  element \"SNATReturn\" \"snat\" {}\n  element \"Discard\" \"drop\" {}"},
		[2]string{`"rx -> frag -> parse -> ct",`, "\"rx -> frag -> parse -> snat -> ct\",\n    \"snat.reply -> encap\",\n    \"snat.bad -> drop\","},
		[2]string{"  pool     = \"web\"\n  shards   = [\"a\"]\n  announce \"bgp\" {", "  pool     = \"web\"\n  shards   = [\"a\"]\n  snat_ports = 1024\n  announce \"bgp\" {"},
		[2]string{"  address  = \"fd00:90:100::10\"\n  protocol = \"tcp\"\n  ports    = [80]\n  pool     = \"web\"\n", "  address  = \"fd00:90:100::10\"\n  protocol = \"tcp\"\n  ports    = [80]\n  pool     = \"web\"\n  snat_ports = 1024\n"},
	)
}

// TestSNAT: two xlbd nodes behind the router's ECMP, VIPs web4 and web6
// with SNAT. Each backend's range is the same on both VIPs (its name, the
// range size and the service ports are); each backend takes it from the
// admin API as the ephemeral ports of its namespace (ip_local_port_range,
// IPv6's too: the kernel alone, no NAT) and opens connections from the
// VIPs to a server in the client namespace: be1 500 from web4 and 100
// from web6, be2 and be3 100 and 50, all at once. The server answers each
// with the address it saw; the backend reads it: the SYN-ACK and the
// answer reached the backend that opened the connection, through
// whichever node ECMP chose, with no state shared between the nodes.
// Every connection must succeed from the VIP and a port of its backend's
// range; both nodes must have sent replies; none is dropped as
// snat.norange.
func TestSNAT(t *testing.T) {
	c := newClusterLab(t, lab.BGP{}, snatConfig(t))
	c.start(0)
	c.start(1)
	c.waitHops(web4, 0, 1)
	l := c.l

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var bs []admin.Backend
	if err := admin.NewClient(filepath.Join(l.Dir(), l.LB(0).Name+".admin.sock")).Get(ctx, "/v1/backends", &bs); err != nil {
		t.Fatal(err)
	}
	ranges := map[string][2]uint16{}
	for _, b := range bs {
		if b.VIP != "web4" && b.VIP != "web6" {
			continue
		}
		var first, last uint16
		if _, err := fmt.Sscanf(b.SNAT, "%d-%d", &first, &last); err != nil || last-first != 1023 {
			t.Fatalf("backend %s of %s has SNAT range %q", b.Backend, b.VIP, b.SNAT)
		}
		if r, ok := ranges[b.Backend]; ok && r != [2]uint16{first, last} {
			t.Fatalf("backend %s has range %d-%d on one VIP, %s on %s", b.Backend, r[0], r[1], b.SNAT, b.VIP)
		}
		ranges[b.Backend] = [2]uint16{first, last}
	}
	if len(ranges) != 3 {
		t.Fatalf("ranges %v, want be1, be2, be3's", ranges)
	}
	for name, r := range ranges {
		if err := l.Sysctl(mustBackend(t, l, name).NS, "ipv4/ip_local_port_range", fmt.Sprintf("%d %d", r[0], r[1])); err != nil {
			t.Fatal(err)
		}
	}

	// vip and server by family.
	vip := map[int]netip.Addr{4: lab.VIP4, 6: lab.VIP6}
	server := map[int]netip.AddrPort{4: netip.AddrPortFrom(l.Client().Addr4, 7000), 6: netip.AddrPortFrom(l.Client().Addr6, 7000)}
	for _, s := range server {
		var ln net.Listener
		if err := l.Do(l.Client().NS, func() (err error) { ln, err = net.Listen("tcp", s.String()); return }); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(conn, "%s\n", conn.RemoteAddr())
				conn.Close()
			}
		}()
	}

	type job struct {
		backend string
		family  int
	}
	counts := map[job]int{{"be1", 4}: 500, {"be2", 4}: 100, {"be3", 4}: 100, {"be1", 6}: 100, {"be2", 6}: 50, {"be3", 6}: 50}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	ok := map[job]int{}
	for j, n := range counts {
		dial := l.Dialer(mustBackend(t, l, j.backend).NS)
		r := ranges[j.backend]
		work := make(chan int, n)
		for i := range n {
			work <- i
		}
		close(work)
		for range 15 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					err := snatConn(dial, vip[j.family], server[j.family], r)
					mu.Lock()
					if err != nil {
						failures = append(failures, fmt.Sprintf("%s IPv%d: %v", j.backend, j.family, err))
					} else {
						ok[j]++
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for j, n := range counts {
		if ok[j] != n {
			t.Errorf("%s: %d of %d connections from the IPv%d VIP succeeded", j.backend, ok[j], n, j.family)
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d failures, the first: %s", len(failures), strings.Join(failures[:min(5, len(failures))], "; "))
	}

	replies := regexp.MustCompile(`xlb_snat_replies_total (\d+)`)
	total := 0
	for i := range 2 {
		out, err := c.nodes[i].Stop()
		c.nodes[i] = nil
		if err != nil {
			t.Fatalf("%s: %v\n%s", l.LB(i).Name, err, out)
		}
		m := replies.FindStringSubmatch(out)
		n := 0
		if m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		t.Logf("%s sent %d SNAT replies", l.LB(i).Name, n)
		if n == 0 {
			t.Errorf("%s sent no SNAT reply: ECMP gave it none, or it dropped them:\n%s", l.LB(i).Name, out)
		}
		if strings.Contains(out, "snat.norange") {
			t.Errorf("%s dropped packets as snat.norange:\n%s", l.LB(i).Name, out)
		}
		total += n
	}
	// Each connection's SYN-ACK, answer and FIN at least.
	if want := 3 * (500 + 100 + 100 + 100 + 50 + 50); total < want {
		t.Errorf("%d SNAT replies in all, want at least %d", total, want)
	}
}

// snatConn opens a connection from vip to server with dial (in a
// backend's namespace) and reads the address the server saw: the VIP and
// the connection's own port, in r.
func snatConn(dial func(local, remote netip.AddrPort) (net.Conn, error), vip netip.Addr, server netip.AddrPort, r [2]uint16) error {
	conn, err := dial(netip.AddrPortFrom(vip, 0), server)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	if p := local.Port(); p < r[0] || p > r[1] {
		return fmt.Errorf("source port %d outside the range %d-%d", p, r[0], r[1])
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("from %s: %w", local, err)
	}
	if seen := strings.TrimSpace(line); seen != local.String() {
		return fmt.Errorf("the server saw %s, the backend is %s", seen, local)
	}
	return nil
}

// mustBackend is the lab's backend name.
func mustBackend(t *testing.T, l *lab.Lab, name string) lab.Node {
	t.Helper()
	n, ok := l.Backend(name)
	if !ok {
		t.Fatalf("no backend %s", name)
	}
	return n
}
