package e2e_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/client"
	"github.com/xlbproject/xlb/e2e/lab"
)

// countPort is the UDP port of the counted stream's VIPs (discard).
const countPort = 9

// writeConfig writes s to a new file renamed over path, as editors and
// config tools do: xlbd never reads half a file.
func writeConfig(t *testing.T, path, s string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startReloadable starts xlbd on the lab's LB node with reloadConfig(base,
// 0), and returns it, its configuration file and a function that rewrites
// that file (reloaded on SIGHUP).
func startReloadable(t *testing.T, l *lab.Lab, xlbd, base string) (*lab.XLBD, string, func(string)) {
	t.Helper()
	config := filepath.Join(t.TempDir(), "xlbd.hcl")
	write := func(s string) { t.Helper(); writeConfig(t, config, s) }
	write(reloadConfig(t, base, 0))
	x, err := l.StartXLBD(l.LB(0), xlbd, config, "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}
	return x, config, write
}

// reloadConfig is examples/lab/lab.hcl with the counted stream's UDP VIPs
// (port countPort on both VIP addresses, pool web) added, and with one
// of the changes a reload makes applied: state i of the valid states
// cycles through a weight change, a drained backend and an added VIP port.
func reloadConfig(t *testing.T, base string, i int) string {
	t.Helper()
	s := base + fmt.Sprintf(`
vip "count4" {
  address  = %q
  protocol = "udp"
  ports    = [%d]
  pool     = "web"
}

vip "count6" {
  address  = %q
  protocol = "udp"
  ports    = [%[2]d]
  pool     = "web"
}
`, lab.VIP4, countPort, lab.VIP6)
	replace := func(old, new string) {
		t.Helper()
		if !strings.Contains(s, old) {
			t.Fatalf("examples/lab/lab.hcl no longer holds %q; update this test", old)
		}
		s = strings.Replace(s, old, new, 1)
	}
	switch i % 4 {
	case 1: // be1's weight 1 becomes 4
		replace("address = \"10.90.2.21\"\n    weight  = 1", "address = \"10.90.2.21\"\n    weight  = 4")
	case 2: // be2 drained: its flows stay, no new ones
		replace(`backend "be2" {`, "backend \"be2\" {\n    drain = true")
	case 3: // web4 also on port 8080
		replace("ports    = [80]\n  pool     = \"web\"", "ports    = [80, 8080]\n  pool     = \"web\"")
	}
	return s
}

// invalidConfig breaks a valid configuration in one of three ways, by i.
func invalidConfig(valid string, i int) string {
	switch i % 3 {
	case 0: // a syntax error
		return valid + "\nvip \"broken\" {\n  address = \n}\n"
	case 1: // an unknown pool
		return strings.Replace(valid, `pool     = "web"`, `pool     = "wbe"`, 1)
	default: // a bad value
		return strings.Replace(valid, "weight  = 3", "weight  = -3", 1)
	}
}

// TestReloadZeroLoss: steady traffic through xlbd while it reloads its file
// on SIGHUP 100 times, a valid change and an invalid one alternating (50
// applied, 50 rejected, each awaited in the log before the next).
//
// The traffic is 300 held HTTP keep-alive connections (IPv4 and IPv6) and
// a counted stream: UDP datagrams, each numbered, from 64 flows (source
// ports; half to each VIP) to UDP VIPs on port countPort, received by
// sockets the test opens on the VIPs in every backend namespace. It
// asserts, over the whole run:
//   - lost = 0: every datagram sent was received by a backend; and every
//     packet xlbd received from AF_XDP (its RxXDP counters, TCP and UDP)
//     it sent (TxXDP), every one of those a backend decapsulated
//     (lab.BackendStats), and xlbd counted no drop of any reason;
//   - misrouted = 0: all the datagrams of a flow reached one backend, and every held connection answered from one
//     backend only (a segment sent to another backend would be reset
//     there and kill the connection);
//   - every held connection alive to the end, without an error.
//
// It logs each reload's time from SIGHUP to the log line, the time of the
// bounded child that prechecks a reload (`xlbd validate -plugins=false`,
// run the same way), and the longest stall of a held connection.
func TestReloadZeroLoss(t *testing.T) {
	l, b := serving(t, true)
	src, err := os.ReadFile(labConfig(t, "GREEncap"))
	if err != nil {
		t.Fatal(err)
	}
	base := string(src)
	x, config, write := startReloadable(t, l, b["xlbd"], base)
	defer x.Stop()

	stream := startStream(t, l, 64)
	const interval = 100 * time.Millisecond
	h, before := lab.Hold(t, l, client.HoldOptions{
		Conns:    300,
		Targets:  []netip.AddrPort{netip.AddrPortFrom(lab.VIP4, 80), netip.AddrPortFrom(lab.VIP6, 80)},
		Interval: interval,
	}, 3)

	tcp0, err := l.NetCounters(l.Client().NS)
	if err != nil {
		t.Fatal(err)
	}
	var took [2][]time.Duration // applied, rejected
	applied, rejected := 0, 0
	for i := range 100 {
		want, content := `msg="configuration applied"`, reloadConfig(t, base, i/2+1)
		if i%2 == 1 {
			want, content = "reload rejected", invalidConfig(reloadConfig(t, base, i/2+1), i/2)
		}
		write(content)
		mark := x.LogMark()
		if err := x.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		d, err := x.WaitLog(mark, 20*time.Second, want)
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		took[i%2] = append(took[i%2], d)
		if i%2 == 0 {
			applied++
		} else {
			rejected++
		}
	}
	if applied != 50 || rejected != 50 {
		t.Errorf("%d reloads applied and %d rejected, want 50 and 50", applied, rejected)
	}
	after := lab.WaitAnswers(t, h, before, 2)
	// Logged, not asserted: a loss on the reply path (not through xlbd)
	// or a spurious timeout on a loaded machine also retransmits. A
	// retransmission the backend reports as a duplicate (D-SACK) was not
	// lost; a tail loss probe is sent when an ACK is late, lost or not.
	tcp1, err := l.NetCounters(l.Client().NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TCP during the reloads, client: %d segments retransmitted, %d tail loss probes, %d reported duplicate (D-SACK), %d spurious timeouts",
		tcp1["Tcp:RetransSegs"]-tcp0["Tcp:RetransSegs"], tcp1["TcpExt:TCPLossProbes"]-tcp0["TcpExt:TCPLossProbes"],
		tcp1["TcpExt:TCPDSACKRecv"]-tcp0["TcpExt:TCPDSACKRecv"], tcp1["TcpExt:TCPSpuriousRTOs"]-tcp0["TcpExt:TCPSpuriousRTOs"])
	lab.CheckHeld(t, after, interval)
	t.Logf("held connections: %v", after.Summary)
	sum := stream.stop(t)
	t.Logf("counted stream: %s", sum)

	fin := h.Stop()
	if fin.Summary.Alive != fin.Summary.Conns || fin.Summary.Moved != 0 {
		t.Errorf("held connections at the end: %v", fin.Summary)
	}
	for i, what := range []string{"applied", "rejected"} {
		ds := took[i]
		slices.Sort(ds)
		t.Logf("reload %s, SIGHUP to log line: median %v, max %v", what, ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	write(reloadConfig(t, base, 0))
	t.Logf("precheck child (xlbd validate -plugins=false) alone, median of 5: %v", timeValidate(t, l, b["xlbd"], config).Round(time.Millisecond))
	t.Logf("longest stall of a held connection: %v", fin.Summary.MaxStall)

	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	checkNoLoss(t, l, out)
}

// timeValidate returns the median time of five runs of the child a reload
// starts before it loads the file, in the LB node's namespace.
func timeValidate(t *testing.T, l *lab.Lab, xlbd, config string) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range 5 {
		start := time.Now()
		cmd := exec.Command("ip", "netns", "exec", l.LB(0).NS, xlbd, "validate", "-plugins=false",
			fmt.Sprintf("-max-heap=%d", 3<<30), "-max-cpu=1m0s", "-var", "interface="+l.LB(0).Iface, config)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("xlbd validate: %v\n%s", err, out)
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// checkNoLoss checks xlbd's exit counters (out) against the backends':
// xlbd dropped nothing, sent every packet it received, and the backends
// decapsulated every one.
func checkNoLoss(t *testing.T, l *lab.Lab, out string) {
	t.Helper()
	total := func(name string) uint64 {
		var n uint64
		for _, m := range regexp.MustCompile(`(?m)^  `+name+`(?:\{[^}]*\})? (\d+)$`).FindAllStringSubmatch(out, -1) {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			n += v
		}
		return n
	}
	rx, tx := total("xlb_xdp_rx_packets_total"), total("xlb_xdp_tx_packets_total")
	for _, name := range []string{"xlb_xdp_kernel_rx_dropped_total", "xlb_xdp_kernel_rx_ring_full_total", "xlb_xdp_kernel_tx_invalid_total", "xlb_xdp_vip_sync_errors_total"} {
		if n := total(name); n != 0 {
			t.Errorf("%s %d", name, n)
		}
	}
	if _, drops, ok := strings.Cut(out, "== drops\n"); ok {
		drops, _, _ = strings.Cut(drops, "==")
		for _, line := range strings.Split(strings.TrimSpace(drops), "\n")[1:] {
			if f := strings.Fields(line); len(f) == 0 || f[len(f)-1] != "0" {
				t.Errorf("xlbd dropped packets: %s", line)
			}
		}
	}
	var decap uint64
	for _, be := range []string{"be1", "be2", "be3"} {
		st, err := l.BackendStats(be)
		if err != nil {
			t.Fatal(err)
		}
		decap += st.DecapGRE
		if st.Malformed+st.Unsupported+st.NotLocal+st.TunErrors != 0 {
			t.Errorf("%s: %+v", be, st)
		}
	}
	t.Logf("xlbd received %d packets from AF_XDP and sent %d; the backends decapsulated %d", rx, tx, decap)
	if rx == 0 || tx != rx || decap != tx {
		t.Errorf("packets lost: xlbd received %d, sent %d; the backends decapsulated %d\n%s", rx, tx, decap, out)
	}
}

// stream is the counted UDP stream: flows sending numbered datagrams to
// the VIPs' countPort, and the backends' sockets counting them.
type stream struct {
	flows []net.Conn
	rcv   []net.PacketConn
	done  chan struct{}
	sends chan struct{} // closed when the sender has returned
	wg    sync.WaitGroup
	sent  atomic.Uint64
	mu    sync.Mutex
	got   map[uint32]map[string]uint64 // flow -> backend -> datagrams
	dup   uint64
	seen  map[uint64]bool // flow<<32 | seq
}

// startStream opens n flows from the client namespace (half to each VIP)
// and a socket on each VIP's countPort in every backend namespace, and
// sends a datagram every millisecond, the flows in turn.
func startStream(t *testing.T, l *lab.Lab, n int) *stream {
	t.Helper()
	s := &stream{done: make(chan struct{}), sends: make(chan struct{}), got: map[uint32]map[string]uint64{}, seen: map[uint64]bool{}}
	t.Cleanup(func() { s.close() })
	for _, be := range []string{"be1", "be2", "be3"} {
		node, _ := l.Backend(be)
		for _, vip := range []netip.Addr{lab.VIP4, lab.VIP6} {
			var c net.PacketConn
			if err := l.Do(node.NS, func() (err error) {
				c, err = net.ListenPacket("udp", netip.AddrPortFrom(vip, countPort).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
			s.rcv = append(s.rcv, c)
			s.wg.Add(1)
			go s.receive(be, c)
		}
	}
	for i := range n {
		vip := lab.VIP4
		if i%2 == 1 {
			vip = lab.VIP6
		}
		var c net.Conn
		if err := l.Do(l.Client().NS, func() (err error) {
			c, err = net.Dial("udp", netip.AddrPortFrom(vip, countPort).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		s.flows = append(s.flows, c)
	}
	go s.send()
	return s
}

func (s *stream) send() {
	defer close(s.sends)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var buf [8]byte
	for seq := uint32(0); ; seq++ {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		flow := seq % uint32(len(s.flows))
		binary.BigEndian.PutUint32(buf[:4], flow)
		binary.BigEndian.PutUint32(buf[4:], seq)
		if _, err := s.flows[flow].Write(buf[:]); err == nil {
			s.sent.Add(1)
		}
	}
}

func (s *stream) receive(be string, c net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 64)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if n != 8 {
			continue
		}
		flow, seq := binary.BigEndian.Uint32(buf[:4]), binary.BigEndian.Uint32(buf[4:])
		s.mu.Lock()
		if s.seen[uint64(flow)<<32|uint64(seq)] {
			s.dup++
		}
		s.seen[uint64(flow)<<32|uint64(seq)] = true
		if s.got[flow] == nil {
			s.got[flow] = map[string]uint64{}
		}
		s.got[flow][be]++
		s.mu.Unlock()
	}
}

// received returns how many datagrams the backends received.
func (s *stream) received() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return uint64(len(s.seen)) + s.dup
}

// stop stops sending, waits until the last datagrams arrived (a second at
// most), checks the counts and returns a summary.
func (s *stream) stop(t *testing.T) string {
	t.Helper()
	close(s.done)
	// A datagram may arrive before its write is counted: count them all
	// first.
	<-s.sends
	deadline := time.Now().Add(time.Second)
	for s.received() < s.sent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sent, got := s.sent.Load(), s.received()
	s.mu.Lock()
	defer s.mu.Unlock()
	var misrouted uint64
	per := map[string]uint64{}
	for flow, bes := range s.got {
		var most uint64
		var all uint64
		for be, n := range bes {
			per[be] += n
			all += n
			most = max(most, n)
		}
		if len(bes) > 1 {
			// The backend that got most of the flow is taken as its own.
			misrouted += all - most
			t.Errorf("flow %d reached several backends: %v", flow, bes)
		}
	}
	if got != sent || s.dup != 0 || misrouted != 0 || len(s.got) != len(s.flows) {
		t.Errorf("counted stream: %d datagrams sent, %d received (%d duplicates), %d misrouted, %d of %d flows seen",
			sent, got, s.dup, misrouted, len(s.got), len(s.flows))
	}
	return fmt.Sprintf("%d datagrams in %d flows sent, %d received, %d lost, %d misrouted; by backend %v", sent, len(s.flows), got, int64(sent)-int64(got), misrouted, per)
}

func (s *stream) close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	for _, c := range s.flows {
		c.Close()
	}
	for _, c := range s.rcv {
		c.Close()
	}
	s.wg.Wait()
}
