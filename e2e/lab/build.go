package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/ethtool"
)

// Do runs fn on an OS thread switched into namespace ns. Sockets fn opens
// stay in ns after it returns (and keep ns alive until closed). fn must not
// rely on other goroutines: they run on other threads, outside ns.
func (l *Lab) Do(ns string, fn func() error) error { return doIn(ns, fn) }

func doIn(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("lab: namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("lab: enter %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked, so the runtime discards it when this
			// goroutine exits instead of reusing it in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("lab: leave %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Sysctl writes a value under /proc/sys/net (path like
// "ipv4/conf/all/rp_filter") in namespace ns.
func (l *Lab) Sysctl(ns, path, value string) error {
	return doIn(ns, func() error { return writeSysctl(path, value) })
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys/net", path), []byte(value), 0); err != nil {
		return fmt.Errorf("lab: sysctl net.%s=%s: %w", path, value, err)
	}
	return nil
}

func addrN(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		b[3] = byte(n)
		return netip.AddrFrom4(b)
	}
	// IPv6 hosts read like their IPv4 twins: .21 is ::21.
	return netip.MustParseAddr(fmt.Sprintf("%s%d", a, n))
}

// build creates everything; on error the caller runs Down.
func (l *Lab) build() error {
	t := l.topo
	six := t.IPv6
	l.router = Router{
		NS:          l.prefix + "router",
		ClientIface: IfaceClient,
		ClientAddr4: addrN(ClientNet4, 1),
		Bridge:      IfaceBridge,
		BridgeAddr4: addrN(ServerNet4, 1),
	}
	l.client = Node{Name: "client", NS: l.prefix + "client", Iface: IfaceEth,
		Addr4: addrN(ClientNet4, 2), Gw4: l.router.ClientAddr4}
	if six {
		l.router.ClientAddr6 = addrN(ClientNet6, 1)
		l.router.BridgeAddr6 = addrN(ServerNet6, 1)
		l.client.Addr6 = addrN(ClientNet6, 2)
		l.client.Gw6 = l.router.ClientAddr6
	}
	server := func(name string, n int) Node {
		nd := Node{Name: name, NS: l.prefix + name, Iface: IfaceEth,
			Addr4: addrN(ServerNet4, n), Gw4: l.router.BridgeAddr4}
		if six {
			nd.Addr6 = addrN(ServerNet6, n)
			nd.Gw6 = l.router.BridgeAddr6
		}
		return nd
	}
	for i := 0; i < t.LBNodes; i++ {
		l.lbs = append(l.lbs, server(fmt.Sprintf("lb%d", i+1), 10+i))
	}
	for i, b := range t.Backends {
		l.backends = append(l.backends, server(b, 21+i))
	}

	// Namespaces, each with its sysctls set before any interface exists so
	// that the "default" values apply to the interfaces made later (the
	// backends' TUN devices included).
	nodes := append(append([]Node{l.client}, l.lbs...), l.backends...)
	if err := l.addNS(l.router.NS, routerSysctls(six)); err != nil {
		return err
	}
	for _, n := range nodes {
		var sc [][2]string
		switch {
		case n.Name == "client":
			// The router's ECMP hash of a client packet is the hash
			// of the client socket, which veth carries along (the
			// kernel reuses an skb's L4 hash); by default TCP draws a
			// new one on every retransmission timeout, so a stalled
			// flow would hop to another LB node before any route
			// changed, which a real client's flows, hashed on the
			// 5-tuple by a router, never do.
			sc = append(hostSysctls(six), [2]string{"core/txrehash", "0"})
		case isLB(l.lbs, n.Name):
			sc = lbSysctls(six)
		default:
			sc = backendSysctls(six)
		}
		if err := l.addNS(n.NS, sc); err != nil {
			return err
		}
	}

	rh, err := l.Handle(l.router.NS)
	if err != nil {
		return err
	}
	defer rh.Close()
	// Up for the services a test runs on the router (etcd): traffic to
	// the router's own addresses goes through its loopback.
	if err := upLoopback(rh); err != nil {
		return err
	}

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: IfaceBridge, MTU: t.InnerMTU}}
	if err := rh.LinkAdd(br); err != nil {
		return fmt.Errorf("lab: add bridge: %w", err)
	}
	if err := l.veth(rh, IfaceClient, &l.client, ClientMTU, nil); err != nil {
		return err
	}
	for i := range l.lbs {
		if err := l.veth(rh, "p-"+l.lbs[i].Name, &l.lbs[i], t.InnerMTU, br); err != nil {
			return err
		}
	}
	for i := range l.backends {
		if err := l.veth(rh, "p-"+l.backends[i].Name, &l.backends[i], t.InnerMTU, br); err != nil {
			return err
		}
	}
	// A bridge takes the smallest MTU of its ports unless told otherwise.
	brl, err := rh.LinkByName(IfaceBridge)
	if err != nil {
		return err
	}
	if err := rh.LinkSetMTU(brl, t.InnerMTU); err != nil {
		return fmt.Errorf("lab: bridge MTU: %w", err)
	}
	if err := rh.LinkSetUp(brl); err != nil {
		return err
	}
	l.router.BridgeMAC = brl.Attrs().HardwareAddr
	if err := addAddr(rh, brl, l.router.BridgeAddr4, ServerNet4); err != nil {
		return err
	}
	cl, err := rh.LinkByName(IfaceClient)
	if err != nil {
		return err
	}
	if err := addAddr(rh, cl, l.router.ClientAddr4, ClientNet4); err != nil {
		return err
	}
	if six {
		if err := addAddr(rh, brl, l.router.BridgeAddr6, ServerNet6); err != nil {
			return err
		}
		if err := addAddr(rh, cl, l.router.ClientAddr6, ClientNet6); err != nil {
			return err
		}
	}
	if t.BGP == nil {
		if err := l.vipRoutes(rh, brl); err != nil {
			return err
		}
	}

	for i := range nodes {
		n := &nodes[i]
		if err := l.hostSide(n); err != nil {
			return err
		}
	}
	// nodes holds copies; hostSide filled the MACs.
	l.client = nodes[0]
	copy(l.lbs, nodes[1:1+len(l.lbs)])
	copy(l.backends, nodes[1+len(l.lbs):])

	// Checksum offload on the client's veth would leave TCP checksums
	// partial (veth never fills them in); a packet an LB copies out with
	// AF_XDP would then reach the backend with a bad checksum.
	if err := doIn(l.client.NS, func() error { return ethtool.SetTxChecksum(IfaceEth, false) }); err != nil {
		return err
	}
	if t.BGP != nil {
		return l.startBird()
	}
	return nil
}

func isLB(lbs []Node, name string) bool {
	for _, n := range lbs {
		if n.Name == name {
			return true
		}
	}
	return false
}

func (l *Lab) addNS(name string, sysctls [][2]string) error {
	if err := newNamedNS(name); err != nil {
		return fmt.Errorf("lab: create namespace %s: %w", name, err)
	}
	l.mu.Lock()
	l.ns = append(l.ns, name)
	l.mu.Unlock()
	return doIn(name, func() error {
		for _, s := range sysctls {
			if err := writeSysctl(s[0], s[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

// newNamedNS creates a named namespace from a thread of its own, which it
// then leaves.
func newNamedNS(name string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			// NewNamed may have unshared already: leave the thread locked
			// so it is discarded.
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
			return
		}
		h.Close()
		if err := netns.Set(orig); err != nil {
			errc <- err
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// veth makes a veth pair in the router, routerSide there (enslaved to br
// if not nil) and eth0 in n's namespace, both up with the given MTU.
func (l *Lab) veth(rh *netlink.Handle, routerSide string, n *Node, mtu int, br *netlink.Bridge) error {
	peerNS, err := netns.GetFromName(n.NS)
	if err != nil {
		return err
	}
	defer peerNS.Close()
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: routerSide, MTU: mtu},
		PeerName:      IfaceEth,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(int(peerNS)),
	}
	if err := rh.LinkAdd(v); err != nil {
		return fmt.Errorf("lab: add veth %s/%s: %w", routerSide, n.Name, err)
	}
	link, err := rh.LinkByName(routerSide)
	if err != nil {
		return err
	}
	if br != nil {
		if err := rh.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("lab: enslave %s: %w", routerSide, err)
		}
	}
	return rh.LinkSetUp(link)
}

// hostSide configures eth0 in a client, LB or backend namespace.
func (l *Lab) hostSide(n *Node) error {
	h, err := l.Handle(n.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := upLoopback(h); err != nil {
		return err
	}
	link, err := h.LinkByName(IfaceEth)
	if err != nil {
		return err
	}
	n.MAC = link.Attrs().HardwareAddr
	return n.bringUp(h, link)
}

// upLoopback sets the namespace's loopback up.
func upLoopback(h *netlink.Handle) error {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
}

// bringUp gives a host node's interface its addresses, sets it up and adds
// its default routes; it may run again after the link was set down (which
// drops the routes, and the IPv6 address).
func (n *Node) bringUp(h *netlink.Handle, link netlink.Link) error {
	net4, net6 := ServerNet4, ServerNet6
	if n.Name == "client" {
		net4, net6 = ClientNet4, ClientNet6
	}
	if err := addAddr(h, link, n.Addr4, net4); err != nil {
		return err
	}
	if n.Addr6.IsValid() {
		if err := addAddr(h, link, n.Addr6, net6); err != nil {
			return err
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return err
	}
	gws := []netip.Addr{n.Gw4}
	if n.Gw6.IsValid() {
		gws = append(gws, n.Gw6)
	}
	for _, gw := range gws {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("lab: %s: default route via %s: %w", n.Name, gw, err)
		}
	}
	return nil
}

// SetLink sets node n's interface down (its backend stops answering, as a
// pulled cable would) or up again with its addresses and routes restored.
func (l *Lab) SetLink(n Node, up bool) error {
	h, err := l.Handle(n.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(n.Iface)
	if err != nil {
		return err
	}
	if !up {
		return h.LinkSetDown(link)
	}
	return n.bringUp(h, link)
}

// addAddr adds a to link (again, harmlessly) with the length of net. IPv6 addresses skip
// duplicate address detection, which would hold them "tentative" (not
// usable as a source or for bind) for a second or more.
func addAddr(h *netlink.Handle, link netlink.Link, a netip.Addr, pfx netip.Prefix) error {
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(pfx.Bits(), a.BitLen())}}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("lab: add %s to %s: %w", a, link.Attrs().Name, err)
	}
	return nil
}

// vipRoutes routes the VIP(s) from the router to the LB nodes: one next
// hop, or an ECMP multipath route over all of them.
func (l *Lab) vipRoutes(rh *netlink.Handle, br netlink.Link) error {
	type fam struct {
		vip  netip.Addr
		addr func(Node) netip.Addr
	}
	fams := []fam{{VIP4, func(n Node) netip.Addr { return n.Addr4 }}}
	if l.topo.IPv6 {
		fams = append(fams, fam{VIP6, func(n Node) netip.Addr { return n.Addr6 }})
	}
	for _, f := range fams {
		dst := &net.IPNet{IP: f.vip.AsSlice(), Mask: net.CIDRMask(f.vip.BitLen(), f.vip.BitLen())}
		r := &netlink.Route{Dst: dst}
		if len(l.lbs) == 1 {
			r.LinkIndex = br.Attrs().Index
			r.Gw = f.addr(l.lbs[0]).AsSlice()
		} else {
			for _, n := range l.lbs {
				r.MultiPath = append(r.MultiPath, &netlink.NexthopInfo{
					LinkIndex: br.Attrs().Index, Gw: f.addr(n).AsSlice()})
			}
		}
		if err := rh.RouteAdd(r); err != nil {
			return fmt.Errorf("lab: route %s: %w", f.vip, err)
		}
	}
	return nil
}

// Sysctls per role. New namespaces start from the kernel's defaults, not
// the host's (net.core.devconf_inherit_init_net=0), so every value the lab
// depends on is written here.
func hostSysctls(six bool) [][2]string {
	if !six {
		return nil
	}
	return [][2]string{
		{"ipv6/conf/all/accept_dad", "0"},
		{"ipv6/conf/default/accept_dad", "0"},
	}
}

func routerSysctls(six bool) [][2]string {
	s := [][2]string{
		{"ipv4/ip_forward", "1"},
		// LBs and backends share the bridge, so an encapsulated packet
		// from an LB leaves by the interface it came in on: no redirects.
		{"ipv4/conf/all/send_redirects", "0"},
		{"ipv4/conf/default/send_redirects", "0"},
		{"ipv4/conf/all/rp_filter", "0"},
		{"ipv4/conf/default/rp_filter", "0"},
		// ECMP over LB nodes by 5-tuple, as a datacenter router would;
		// the default hashes addresses only.
		{"ipv4/fib_multipath_hash_policy", "1"},
	}
	if six {
		s = append(s, hostSysctls(true)...)
		s = append(s,
			[2]string{"ipv6/conf/all/forwarding", "1"},
			[2]string{"ipv6/fib_multipath_hash_policy", "1"})
	}
	return s
}

func lbSysctls(six bool) [][2]string {
	s := [][2]string{
		{"ipv4/conf/all/accept_redirects", "0"},
		{"ipv4/conf/default/accept_redirects", "0"},
	}
	if six {
		s = append(s, hostSysctls(true)...)
		s = append(s,
			[2]string{"ipv6/conf/all/accept_redirects", "0"},
			[2]string{"ipv6/conf/default/accept_redirects", "0"})
	}
	return s
}

func backendSysctls(six bool) [][2]string {
	s := [][2]string{
		// Decapsulated packets come in on the TUN device from the
		// client's address, whose route is via eth0: strict reverse path
		// filtering would drop them.
		{"ipv4/conf/all/rp_filter", "0"},
		{"ipv4/conf/default/rp_filter", "0"},
		// The VIP is on every backend: answer ARP only for eth0's own
		// address, and source ARP requests from it (the usual DSR setup).
		{"ipv4/conf/all/arp_ignore", "1"},
		{"ipv4/conf/all/arp_announce", "2"},
	}
	if six {
		s = append(s, hostSysctls(true)...)
	}
	return s
}
