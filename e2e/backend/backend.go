package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config is one backend's configuration (the xlb-backend flags).
type Config struct {
	Name  string       // answered in the body and the X-Backend header
	Iface string       // where tunnelled packets arrive (eth0)
	Tun   string       // the TUN device to create (tun0)
	VIPs  []netip.Addr // put on Tun (/32, /128) and served on Port
	Port  int          // HTTP port (80)
	// Real also serves HTTP on Iface's own addresses, for health checks
	// that probe a backend's real address.
	Real bool
	// Stats, if set, is a Unix socket path serving GET /stats (JSON
	// Stats). It is created last, once everything is ready, so its
	// existence means the backend accepts traffic. Unix socket paths are
	// not tied to a network namespace.
	Stats string
}

// Stats are the backend's counters.
type Stats struct {
	Name        string `json:"name"`
	Received    uint64 `json:"received"`     // packets the filtered AF_PACKET socket read
	DecapGRE    uint64 `json:"decap_gre"`    // GRE packets written to the TUN device
	DecapIPIP   uint64 `json:"decap_ipip"`   // IPIP / IPv6-in-IP packets written to the TUN device
	NotLocal    uint64 `json:"not_local"`    // outer destination not ours
	Malformed   uint64 `json:"malformed"`    // bad lengths, versions, checksum
	Unsupported uint64 `json:"unsupported"`  // GRE flags, other payloads
	Fragments   uint64 `json:"fragments"`    // outer fragments received (Reassembler)
	Reassembled uint64 `json:"reassembled"`  // outer packets reassembled from them
	FragDropped uint64 `json:"frag_dropped"` // fragments refused: malformed, overlapping, no room
	TunErrors   uint64 `json:"tun_errors"`   // failed writes to the TUN device
	TunOut      uint64 `json:"tun_out"`      // packets the kernel routed out of the TUN device (should stay 0)
	Requests    uint64 `json:"http_requests"`
}

type counters struct {
	received, gre, ipip, notLocal, malformed, unsupported, tunErrors, tunOut, requests atomic.Uint64
	fragments, reassembled, fragDropped                                                atomic.Uint64
}

func (c *counters) snapshot(name string) Stats {
	return Stats{
		Name: name, Received: c.received.Load(), DecapGRE: c.gre.Load(), DecapIPIP: c.ipip.Load(),
		NotLocal: c.notLocal.Load(), Malformed: c.malformed.Load(), Unsupported: c.unsupported.Load(),
		TunErrors: c.tunErrors.Load(), TunOut: c.tunOut.Load(), Requests: c.requests.Load(),
		Fragments: c.fragments.Load(), Reassembled: c.reassembled.Load(), FragDropped: c.fragDropped.Load(),
	}
}

// Run sets the backend up in the current network namespace (the process's:
// run it with `ip netns exec`), serves until ctx is done, and returns the
// final counters.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	var c counters
	if cfg.Name == "" || cfg.Iface == "" || cfg.Tun == "" || len(cfg.VIPs) == 0 {
		return Stats{}, errors.New("backend: name, iface, tun and at least one VIP are required")
	}
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return Stats{}, err
	}
	local, err := ifaceAddrs(ifi)
	if err != nil {
		return Stats{}, err
	}

	tun, err := createTun(cfg.Tun, cfg.VIPs)
	if err != nil {
		return Stats{}, err
	}
	defer tun.Close()

	// Without a GRE/IPIP module the kernel answers every tunnelled packet
	// with ICMP protocol unreachable (IPv6: parameter problem) unless a
	// raw socket takes the protocol. These take it and drop everything.
	sinks, err := protocolSinks()
	if err != nil {
		return Stats{}, err
	}
	defer func() {
		for _, fd := range sinks {
			unix.Close(fd)
		}
	}()

	pkt, err := openPacket(ifi.Index)
	if err != nil {
		return Stats{}, err
	}

	var lns []net.Listener
	addrs := append([]netip.Addr(nil), cfg.VIPs...)
	if cfg.Real {
		addrs = append(addrs, local...)
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(a.String(), strconv.Itoa(cfg.Port)))
		if err != nil {
			pkt.Close()
			for _, ln := range lns {
				ln.Close()
			}
			return Stats{}, err
		}
		lns = append(lns, ln)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		// An upload (TestPathMTU) is read to its end and its size
		// answered, so the client knows every byte crossed the tunnel.
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Received", strconv.FormatInt(n, 10))
		w.Header().Set("X-Backend", cfg.Name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\n", cfg.Name)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	wg.Go(func() { readPackets(pkt, tun, local, &c) })
	wg.Go(func() { drainTun(tun, &c) })
	for _, ln := range lns {
		wg.Go(func() { _ = srv.Serve(ln) })
	}

	var statsSrv *http.Server
	if cfg.Stats != "" {
		_ = os.Remove(cfg.Stats)
		tmp := filepath.Join(filepath.Dir(cfg.Stats), "."+filepath.Base(cfg.Stats)+".tmp")
		_ = os.Remove(tmp)
		sln, err := net.Listen("unix", tmp)
		if err == nil {
			// Appear under the final name only once listening.
			err = os.Rename(tmp, cfg.Stats)
		}
		if err != nil {
			pkt.Close()
			tun.Close()
			srv.Close()
			wg.Wait()
			return c.snapshot(cfg.Name), err
		}
		sm := http.NewServeMux()
		sm.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(c.snapshot(cfg.Name))
		})
		statsSrv = &http.Server{Handler: sm, ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() { _ = statsSrv.Serve(sln) })
	}

	<-ctx.Done()
	srv.Close()
	if statsSrv != nil {
		statsSrv.Close()
		os.Remove(cfg.Stats)
	}
	pkt.Close()
	tun.Close()
	wg.Wait()
	return c.snapshot(cfg.Name), nil
}

func ifaceAddrs(ifi *net.Interface) ([]netip.Addr, error) {
	as, err := ifi.Addrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		ip = ip.Unmap()
		if ip.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, ip)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("backend: %s has no address", ifi.Name)
	}
	return out, nil
}

// Reassembly bounds: Linux's ipfrag_time is 30 s; the lab's fragments
// arrive together, so a few seconds and a few datagrams in flight suffice.
const (
	reassemblyMax     = 256
	reassemblyTimeout = 5 * time.Second
)

// readPackets decapsulates until pkt is closed.
func readPackets(pkt, tun *os.File, local []netip.Addr, c *counters) {
	rc, err := pkt.SyscallConn()
	if err != nil {
		return
	}
	tfd := int(tun.Fd())
	buf := make([]byte, 65536)
	// Outer fragments (xlb's too_big_no_df = "fragment") are put back
	// together first, as a kernel tunnel device's stack would.
	reasm := NewReassembler(reassemblyMax, reassemblyTimeout)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		c.received.Add(1)
		whole, fr := reasm.Add(buf[:n], time.Now())
		switch fr {
		case FragHeld:
			c.fragments.Add(1)
			continue
		case FragDropped:
			c.fragments.Add(1)
			c.fragDropped.Add(1)
			continue
		case FragDone:
			c.fragments.Add(1)
			c.reassembled.Add(1)
		}
		inner, r := Decap(whole, local)
		switch r {
		case ResultGRE, ResultIPIP:
			// One write is one packet. The kernel checks the inner
			// packet as it would any received one (checksums included).
			if _, err := unix.Write(tfd, inner); err != nil {
				c.tunErrors.Add(1)
				continue
			}
			if r == ResultGRE {
				c.gre.Add(1)
			} else {
				c.ipip.Add(1)
			}
		case ResultNotLocal:
			c.notLocal.Add(1)
		case ResultUnsupported, ResultOther:
			c.unsupported.Add(1)
		default:
			c.malformed.Add(1)
		}
	}
}

// drainTun reads (and counts) what the kernel sends out of the TUN device,
// so its queue never fills. Replies leave by eth0; nothing should come here.
func drainTun(tun *os.File, c *counters) {
	buf := make([]byte, 65536)
	for {
		if _, err := tun.Read(buf); err != nil {
			return
		}
		c.tunOut.Add(1)
	}
}

// createTun creates a TUN device (IFF_TUN|IFF_NO_PI: each read or write is
// one bare IP packet) holding the VIPs, up, with reverse path filtering
// off (decapsulated packets come from the client, whose route is via
// eth0).
func createTun(name string, vips []netip.Addr) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("backend: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("backend: TUNSETIFF %s: %w", name, err)
	}
	// Non-blocking, so the runtime poller serves tun.Read and Close
	// unblocks it.
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	fail := func(err error) (*os.File, error) {
		f.Close()
		return nil, fmt.Errorf("backend: %s: %w", name, err)
	}
	// Strict reverse path filtering (rp_filter=1) drops every IPv4 inner
	// packet; loose (2) or off would do. Effective is max(all, device).
	for _, path := range []string{"ipv4/conf/all/rp_filter", "ipv4/conf/" + name + "/rp_filter"} {
		if err := os.WriteFile("/proc/sys/net/"+path, []byte("0"), 0); err != nil {
			return fail(err)
		}
	}
	// The kernel would send an IPv6 router solicitation out of the device
	// when it comes up; keep the device silent so TunOut means a misroute.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/router_solicitations", []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fail(err)
	}
	for _, v := range vips {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: v.AsSlice(), Mask: net.CIDRMask(v.BitLen(), v.BitLen())}}
		if v.Is6() {
			// No duplicate address detection: a tentative address
			// cannot be bound.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, a); err != nil {
			return fail(fmt.Errorf("add %s: %w", v, err))
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(err)
	}
	return f, nil
}

// protocolSinks opens raw IPv4 and IPv6 sockets for GRE, IPIP and IPv6
// encapsulation, each with a filter that drops everything.
func protocolSinks() ([]int, error) {
	var fds []int
	drop := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []int{protoGRE, protoIPIP, protoIPv6} {
			fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
			if err == nil {
				err = attachFilter(fd, drop)
				if err != nil {
					unix.Close(fd)
				}
			}
			if err != nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
				return nil, fmt.Errorf("backend: raw socket for protocol %d: %w", proto, err)
			}
			fds = append(fds, fd)
		}
	}
	return fds, nil
}

func attachFilter(fd int, prog []unix.SockFilter) error {
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: unsafe.SliceData(prog)}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp)
}

// Classic BPF ancillary loads (linux/filter.h; not in x/sys/unix).
const (
	skfAdOff      = 0xfffff000 // SKF_AD_OFF, -0x1000
	skfAdProtocol = 0          // SKF_AD_PROTOCOL: skb->protocol, host order
	skfAdPkttype  = 4          // SKF_AD_PKTTYPE: skb->pkt_type
)

// packetFilter accepts, on a SOCK_DGRAM packet socket (data starts at the
// IP header), only packets for this host that carry IPv4 or IPv6 whose
// protocol / next header is GRE, IPIP or IPv6, or an IPv6 Fragment header
// whose next header is one of those (xlb's outer fragments).
var packetFilter = []unix.SockFilter{
	// A = skb->pkt_type; drop unless PACKET_HOST (not outgoing, not
	// another host's).
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdPkttype},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.PACKET_HOST, Jt: 0, Jf: 11},
	// A = skb->protocol (the EtherType).
	{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: skfAdOff + skfAdProtocol},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: etherTypeIPv4, Jt: 0, Jf: 2},
	// IPv4: A = protocol (byte 9).
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 9},
	{Code: unix.BPF_JMP | unix.BPF_JA, K: 4},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: etherTypeIPv6, Jt: 0, Jf: 6},
	// IPv6: A = next header (byte 6); after a Fragment header (44), the
	// Fragment header's next header (byte 40).
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: 44, Jt: 0, Jf: 1},
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 40},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: protoGRE, Jt: 3, Jf: 0},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: protoIPIP, Jt: 2, Jf: 0},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: protoIPv6, Jt: 1, Jf: 0},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
}

// openPacket opens an AF_PACKET SOCK_DGRAM socket on ifindex with
// packetFilter. The socket is made with protocol 0 (receiving nothing),
// filtered, and only then bound to ETH_P_ALL on the interface, so no
// unfiltered packet from another interface slips in first.
func openPacket(ifindex int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("backend: AF_PACKET socket: %w", err)
	}
	if err := attachFilter(fd, packetFilter); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("backend: socket filter: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("backend: bind AF_PACKET: %w", err)
	}
	return os.NewFile(uintptr(fd), "packet"), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
