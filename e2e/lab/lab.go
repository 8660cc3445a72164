// Package lab builds the network-namespace topology that xlb's end-to-end
// tests and `make demo` run in: a client, a router, one or more load
// balancer nodes and a set of backends, wired as a one-armed load balancer
// with direct server return (the layout of Maglev, Katran and GLB Director
// deployments, scaled down to veth pairs and a Linux bridge):
//
//	client ──veth── router ══ br0 ══ lb1..lbN, be1..beM
//
// The router routes the VIP to the LB node(s) (an ECMP multipath route when
// there are several), statically or, with Topology.BGP, as BIRD learns it
// from them over eBGP; the LB encapsulates towards a backend through the
// router, and the backend answers the client directly.
//
// Every namespace name starts with "xlbl-<pid>-<start>-<seq>-", naming the
// process that owns it, so Sweep can remove what a killed run left behind
// without touching the namespaces of a run still alive.
package lab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Default addresses. They are the same in every lab (each lab lives in its
// own namespaces), so configuration files such as examples/lab/lab.hcl can
// name them literally.
var (
	ClientNet4 = netip.MustParsePrefix("10.90.1.0/24")
	ClientNet6 = netip.MustParsePrefix("fd00:90:1::/64")
	ServerNet4 = netip.MustParsePrefix("10.90.2.0/24")
	ServerNet6 = netip.MustParsePrefix("fd00:90:2::/64")
	VIP4       = netip.MustParseAddr("10.90.100.10")
	VIP6       = netip.MustParseAddr("fd00:90:100::10")
)

// Interface names. Every name lives inside a lab namespace, never in the
// host's.
const (
	IfaceEth    = "eth0"      // the one interface of client, LB and backend namespaces
	IfaceBridge = "br0"       // the router's bridge towards LBs and backends
	IfaceClient = "to-client" // the router's side of the client veth
)

const (
	// ClientMTU is the MTU of the client's link: the Internet side.
	ClientMTU = 1500
	// DefaultInnerMTU is the MTU behind the router (bridge, LBs, backends):
	// the client's, as on the Internet side of a real LB, so that a
	// full-size client packet does not fit the tunnel and xlb's path MTU
	// handling (ICMP to the client) is what makes large transfers work.
	DefaultInnerMTU = ClientMTU

	maxLBNodes  = 10 // addresses .10 to .19
	maxBackends = 50 // addresses .21 to .70
)

// Topology describes a lab.
type Topology struct {
	// LBNodes is the number of load balancer nodes (default 1). With more
	// than one, the router spreads flows over them with an ECMP route
	// hashed on the 5-tuple.
	LBNodes int
	// Backends names the backends (default be1, be2, be3). A name is 1 to
	// 12 characters of [a-z0-9].
	Backends []string
	// IPv6 adds IPv6 addresses, routes and the IPv6 VIP.
	IPv6 bool
	// InnerMTU is the MTU behind the router (default DefaultInnerMTU).
	InnerMTU int
	// BGP, if not nil, makes the router run BIRD 2 (Lab.Bird), which
	// learns the VIP routes from the LB nodes over eBGP, instead of
	// holding a static route to the VIPs via every LB node. Up copies it,
	// defaults filled.
	BGP *BGP
	// Log receives, for Up, the lab's own messages and the output of the
	// processes it starts, a line at a time; nil discards them. New sends
	// them to t.Log instead.
	Log io.Writer
}

// Node is one namespace with a single interface (client, LB, backend).
type Node struct {
	Name  string           // role name: "client", "lb1", "be1", ...
	NS    string           // namespace name, for `ip netns exec`
	Iface string           // interface name inside NS (IfaceEth)
	MAC   net.HardwareAddr // Iface's MAC
	Addr4 netip.Addr       // Iface's IPv4 address
	Addr6 netip.Addr       // Iface's IPv6 address; invalid without Topology.IPv6
	Gw4   netip.Addr       // default gateway (the router)
	Gw6   netip.Addr       // IPv6 default gateway; invalid without IPv6
}

// Router is the router namespace: one leg to the client, a bridge to the LB
// nodes and backends.
type Router struct {
	NS          string
	ClientIface string // IfaceClient
	ClientAddr4 netip.Addr
	ClientAddr6 netip.Addr
	Bridge      string     // IfaceBridge
	BridgeAddr4 netip.Addr // the LBs' and backends' gateway
	BridgeAddr6 netip.Addr
	BridgeMAC   net.HardwareAddr // the MAC an LB sends encapsulated packets to
}

// Lab is a running topology. Its methods are safe for concurrent use.
type Lab struct {
	topo     Topology
	prefix   string
	dir      string
	client   Node
	router   Router
	lbs      []Node
	backends []Node
	bird     *Bird // nil without Topology.BGP

	logMu   sync.Mutex
	log     func(...any) // nil: discard
	logOff  bool
	mu      sync.Mutex
	ns      []string // created namespaces, in creation order
	procs   []*proc
	downErr error
	down    bool
}

var seq atomic.Uint32

// testHookBuilt, when set by a test, fails Up after a complete build, to
// check that a failed Up removes everything.
var testHookBuilt func() error

var backendName = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

func (t *Topology) setDefaults() error {
	if t.LBNodes == 0 {
		t.LBNodes = 1
	}
	if t.LBNodes < 0 || t.LBNodes > maxLBNodes {
		return fmt.Errorf("lab: LBNodes = %d, want 1 to %d", t.LBNodes, maxLBNodes)
	}
	if t.Backends == nil {
		t.Backends = []string{"be1", "be2", "be3"}
	}
	if len(t.Backends) > maxBackends {
		return fmt.Errorf("lab: %d backends, at most %d", len(t.Backends), maxBackends)
	}
	seen := map[string]bool{"client": true, "router": true}
	for i := 1; i <= t.LBNodes; i++ {
		seen[fmt.Sprintf("lb%d", i)] = true
	}
	for _, b := range t.Backends {
		if !backendName.MatchString(b) {
			return fmt.Errorf("lab: backend name %q: want 1 to 12 characters of [a-z0-9]", b)
		}
		if seen[b] {
			return fmt.Errorf("lab: backend name %q is used twice or names another node", b)
		}
		seen[b] = true
	}
	if t.InnerMTU == 0 {
		t.InnerMTU = DefaultInnerMTU
	}
	if t.InnerMTU < ClientMTU || t.InnerMTU > 9000 {
		return fmt.Errorf("lab: InnerMTU = %d, want %d to 9000", t.InnerMTU, ClientMTU)
	}
	if t.BGP != nil {
		b := *t.BGP
		if err := b.setDefaults(); err != nil {
			return err
		}
		t.BGP = &b
	}
	return nil
}

// New builds topo for a test and tears it down in t.Cleanup, whether the
// test passes or fails. It fails the test if the lab cannot be built. The
// caller checks for root first (testenv.RequireRoot).
func New(t testing.TB, topo Topology) *Lab {
	t.Helper()
	l, err := up(topo, t.Log)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab teardown: %v", err)
		}
	})
	return l
}

// Up builds topo, for programs (make demo) that are not tests; the caller
// runs Down. It first sweeps namespaces left by dead runs. On error
// everything it built is already torn down.
func Up(topo Topology) (*Lab, error) {
	var log func(...any)
	if topo.Log != nil {
		w := topo.Log
		log = func(a ...any) { fmt.Fprintln(w, a...) }
	}
	return up(topo, log)
}

func up(topo Topology, log func(...any)) (*Lab, error) {
	if err := topo.setDefaults(); err != nil {
		return nil, err
	}
	removed, sweepErr := Sweep()
	prefix, err := runPrefix()
	if err != nil {
		return nil, err
	}
	// Named like the namespaces, so Sweep finds it after a kill.
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	l := &Lab{topo: topo, prefix: prefix, dir: dir, log: log}
	if len(removed) > 0 {
		l.logf("lab: swept namespaces of dead runs: %v", removed)
	}
	if sweepErr != nil {
		// Not fatal: a stale lab does not conflict with a new one.
		l.logf("lab: sweep: %v", sweepErr)
	}
	start := time.Now()
	err = l.build()
	if err == nil && testHookBuilt != nil {
		err = testHookBuilt()
	}
	if err != nil {
		l.logf("lab: build failed: %v", err)
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	l.logf("lab %s up in %v", l.prefix, time.Since(start).Round(time.Millisecond))
	return l, nil
}

// runPrefix names this process and its start time (so a recycled pid is
// not mistaken for the owner) and a per-process lab number.
func runPrefix() (string, error) {
	st, err := procStart(os.Getpid())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("xlbl-%d-%d-%d-", os.Getpid(), st, seq.Add(1)), nil
}

// procStart returns a process's start time in clock ticks since boot
// (field 22 of /proc/<pid>/stat).
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := lastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("lab: cannot parse /proc/%d/stat", pid)
	}
	f := splitFields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("lab: short /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func splitFields(s string) []string {
	var f []string
	start := -1
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\n' {
			if start >= 0 {
				f = append(f, s[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		f = append(f, s[start:])
	}
	return f
}

func (l *Lab) logf(format string, args ...any) {
	l.logMu.Lock()
	defer l.logMu.Unlock()
	if l.logOff || l.log == nil {
		return
	}
	l.log(fmt.Sprintf(format, args...))
}

// Prefix is the common prefix of this lab's namespace names.
func (l *Lab) Prefix() string { return l.prefix }

// Dir is a directory private to this lab (backend stats sockets), removed
// by Down.
func (l *Lab) Dir() string { return l.dir }

// Topology returns the description the lab was built from, defaults filled.
func (l *Lab) Topology() Topology { return l.topo }

// Client is the client node.
func (l *Lab) Client() Node { return l.client }

// Router is the router node.
func (l *Lab) Router() Router { return l.router }

// LBs are the load balancer nodes, lb1 first.
func (l *Lab) LBs() []Node { return append([]Node(nil), l.lbs...) }

// LB is load balancer node i (0-based).
func (l *Lab) LB(i int) Node { return l.lbs[i] }

// Backends are the backends in Topology order.
func (l *Lab) Backends() []Node { return append([]Node(nil), l.backends...) }

// Backend returns the backend called name.
func (l *Lab) Backend(name string) (Node, bool) {
	for _, b := range l.backends {
		if b.Name == name {
			return b, true
		}
	}
	return Node{}, false
}

// VIP is the IPv4 virtual IP, routed by the router to the LB nodes.
func (l *Lab) VIP() netip.Addr { return VIP4 }

// VIP6 is the IPv6 virtual IP; invalid without Topology.IPv6.
func (l *Lab) VIP6() netip.Addr {
	if !l.topo.IPv6 {
		return netip.Addr{}
	}
	return VIP6
}

// Namespaces lists the lab's namespace names.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ns...)
}

// Down stops the processes the lab started, kills any other process left
// in its namespaces, and deletes the namespaces (which deletes their
// interfaces). It is idempotent and returns the first call's result.
func (l *Lab) Down() error {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		return l.downErr
	}
	l.down = true
	procs := l.procs
	l.procs = nil
	names := l.ns
	l.mu.Unlock()

	var errs []error
	stopProcs(procs)
	for i := len(names) - 1; i >= 0; i-- {
		if err := removeNS(names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(l.dir); err != nil {
		errs = append(errs, err)
	}
	if len(names) > 0 {
		l.logf("lab %s down", l.prefix)
	}
	l.logMu.Lock()
	l.logOff = true
	l.logMu.Unlock()

	l.mu.Lock()
	l.ns = nil
	l.downErr = errors.Join(errs...)
	l.mu.Unlock()
	return l.downErr
}

// removeNS kills every process in the namespace, then unmounts and removes
// its name. Interfaces go with the namespace once nothing holds it (a
// socket opened with Do holds it until closed).
func removeNS(name string) error {
	killNS(name)
	err := netns.DeleteNamed(name)
	if errors.Is(err, unix.EINVAL) {
		// Not mounted: another test binary's Sweep, which found the same
		// stale namespace (go test runs packages in parallel), unmounted
		// it first; the file is left if that one has not removed it yet.
		err = os.Remove(nsPath(name))
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: delete namespace %s: %w", name, err)
	}
	return nil
}

// killNS SIGKILLs every process whose network namespace is name, as
// `ip netns pids` finds them.
func killNS(name string) {
	var nsSt unix.Stat_t
	if err := unix.Stat(nsPath(name), &nsSt); err != nil {
		return
	}
	for _, pid := range nsPids(nsSt) {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
}

func nsPids(nsSt unix.Stat_t) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Ino == nsSt.Ino && st.Dev == nsSt.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}

const netnsDir = "/run/netns"

func nsPath(name string) string { return netnsDir + "/" + name }

var staleName = regexp.MustCompile(`^xlbl-(\d+)-(\d+)-\d+-`)

// Sweep removes the namespaces (and kills the processes in them) and the
// lab directories left by lab owners that are no longer running: a test
// binary killed before its cleanup ran. Those whose owner (pid and start
// time) is alive are left alone, so parallel runs do not delete each
// other's; "xlbl-" names not made by this package are left alone too. It
// returns the namespace names removed.
func Sweep() ([]string, error) {
	sweep, release, err := HoldSweeps()
	if err != nil {
		return nil, err
	}
	defer release()
	return sweep()
}

// sweepMu and the lock file sweepLock serialize sweeps within this process
// and across processes: go test runs the lab's packages in parallel, and
// each new lab sweeps.
var sweepMu sync.Mutex

// sweepLock is the file whose exclusive flock a sweep holds.
var sweepLock = filepath.Join(os.TempDir(), "xlb-lab-sweep.lock")

// HoldSweeps keeps every other sweep, in this process and in others, from
// running until release, and returns sweep, which sweeps meanwhile. A test
// that leaves a stale lab on purpose holds it from before the lab goes
// stale to its own sweep: another test's new lab would otherwise sweep it
// first.
func HoldSweeps() (sweep func() ([]string, error), release func(), err error) {
	sweepMu.Lock()
	f, err := os.OpenFile(sweepLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err == nil {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		sweepMu.Unlock()
		return nil, nil, fmt.Errorf("lab: locking sweeps: %w", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			f.Close()
			sweepMu.Unlock()
		})
	}
	return sweepHeld, release, nil
}

// sweepHeld is Sweep's work, run with the sweeps held.
func sweepHeld() ([]string, error) {
	var removed []string
	var errs []error
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !stale(e.Name()) {
			continue
		}
		if err := removeNS(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	dirs, _ := os.ReadDir(os.TempDir())
	for _, e := range dirs {
		if e.IsDir() && stale(e.Name()) {
			if err := os.RemoveAll(filepath.Join(os.TempDir(), e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return removed, errors.Join(errs...)
}

// stale reports whether name was made by a lab whose owner is gone.
func stale(name string) bool {
	m := staleName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, _ := strconv.Atoi(m[1])
	start, _ := strconv.ParseUint(m[2], 10, 64)
	st, err := procStart(pid)
	return err != nil || st != start
}

// proc is a process started with Start.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// stopProcs sends SIGTERM to each process group, waits up to a second for
// all of them, then SIGKILLs what is left.
func stopProcs(procs []*proc) {
	for _, p := range procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	}
	deadline := time.After(time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		case <-deadline:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Exec returns a command that runs name in namespace ns (through
// `ip netns exec`), its output going to the lab's log line by line, in its
// own process group, and killed if this process dies. The caller runs it;
// use Start for a process that must live until the lab goes down.
func (l *Lab) Exec(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	tag := name
	if i := lastIndexByte([]byte(tag), '/'); i >= 0 {
		tag = tag[i+1:]
	}
	w := &lineWriter{l: l, prefix: ns[len(l.prefix):] + " " + tag + ": "}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding the output pipe must not hang Wait.
	cmd.WaitDelay = time.Second
	return cmd
}

// Start runs name in namespace ns like Exec and keeps it running until
// Down (SIGTERM, then SIGKILL after a second).
func (l *Lab) Start(ns, name string, args ...string) (*exec.Cmd, error) {
	cmd := l.Exec(ns, name, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil, errors.New("lab: Start after Down")
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		l.logf("%s in %s exited: %v", name, ns, errOrOK(err))
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return cmd, nil
}

func errOrOK(err error) any {
	if err == nil {
		return "ok"
	}
	return err
}

// lineWriter sends whole lines to the lab's log.
type lineWriter struct {
	l      *Lab
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := -1
		for j, c := range w.buf {
			if c == '\n' {
				i = j
				break
			}
		}
		if i < 0 {
			break
		}
		w.l.logf("%s%s", w.prefix, w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 4096 {
		w.l.logf("%s%s", w.prefix, w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// Handle returns a netlink handle working in namespace ns. The caller
// closes it.
func (l *Lab) Handle(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return netlink.NewHandleAt(h)
}
