package e2e_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
)

// TestFullNATPathMTU: the router's link to the client takes 1400-byte
// packets (its side of the veth; the client's side stays at 1500, so the
// client still offers an MSS of 1460), and a kernel backend sends a 1 MB
// download through FullNAT in full-size segments with DF. The router
// answers them with Fragmentation Needed (IPv6: Packet Too Big) to the
// VIP; FullNAT translates each to the backend, from the connection's
// source, quoting the segment as the backend sent it, and the backend's
// kernel lowers its path MTU to the source: the download completes. Were
// the errors dropped, the backend would resend full-size segments until
// the client gave up.
func TestFullNATPathMTU(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { testFullNATPathMTU(t, 4) })
	t.Run("IPv6", func(t *testing.T) { testFullNATPathMTU(t, 6) })
}

func testFullNATPathMTU(t *testing.T, family int) {
	l, x, vipURL, _ := startFullNAT(t, family, "")
	defer x.Stop()
	r := l.Router()
	h, err := l.Handle(r.NS)
	if err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName(r.ClientIface)
	if err == nil {
		err = h.LinkSetMTU(link, 1400)
	}
	h.Close()
	if err != nil {
		t.Fatalf("the router's link to the client: %v", err)
	}
	const n = 1 << 20
	if err := download(l, vipURL+"?bytes="+fmt.Sprint(n), n); err != nil {
		t.Fatal(err)
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	fam := map[int]string{4: "ipv4", 6: "ipv6"}[family]
	if got := counter(t, out, `xlb_parse_packets_total\{family="`+fam+`",class="icmp_error"\}`); got == 0 {
		t.Errorf("no ICMP error reached xlbd: the router sent none, or they went elsewhere:\n%s", out)
	}
	if got := counter(t, out, `drop\s+fullnat\.\S+`); got != 0 {
		t.Errorf("FullNAT dropped %d packets:\n%s", got, out)
	}
}

// download GETs rawURL from the client's namespace over one connection
// and checks that the body has n bytes.
func download(l *lab.Lab, rawURL string, n int) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	c, err := dialClient(l, host, 20*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || got != int64(n) {
		return fmt.Errorf("%s from %s: %d bytes of %d (%v)", resp.Status, resp.Header.Get("X-Backend"), got, n, err)
	}
	return nil
}

// TestFullNATPortUnreachable: a UDP VIP whose backends have no socket on
// its port. The client's connected UDP socket sends through FullNAT; the
// backend's kernel answers the pool with Port Unreachable, which the XDP
// program hands the graph (by the quoted packet's destination, a steered
// endpoint) and FullNAT sends on to the client from the VIP, quoting the
// client's datagram: the client's socket reads ECONNREFUSED.
func TestFullNATPortUnreachable(t *testing.T) {
	for _, tc := range []struct {
		family    int
		vip, pool string
	}{{4, "10.90.100.10", "web"}, {6, "fd00:90:100::10", "web6"}} {
		t.Run(fmt.Sprintf("IPv%d", tc.family), func(t *testing.T) {
			l, x, _, _ := startFullNAT(t, tc.family, fmt.Sprintf(`
vip "closed" {
  address  = %q
  protocol = "udp"
  ports    = [5300]
  pool     = %q
}
`, tc.vip, tc.pool))
			defer x.Stop()
			vip := netip.AddrPortFrom(netip.MustParseAddr(tc.vip), 5300)
			var c *net.UDPConn
			if err := l.Do(l.Client().NS, func() (err error) {
				c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(vip))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var err error
			for range 5 {
				if _, err = c.Write([]byte("ping")); err != nil {
					break
				}
				if err = c.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
					break
				}
				if _, err = c.Read(make([]byte, 64)); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
					continue
				}
				break
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				out, _ := x.Stop()
				t.Fatalf("the client's socket read %v, want ECONNREFUSED:\n%s", err, out)
			}
			out, err := x.Stop()
			if err != nil {
				t.Fatalf("xlbd: %v\n%s", err, x.Log())
			}
			if got := counter(t, out, `drop\s+fullnat\.\S+`); got != 0 {
				t.Errorf("FullNAT dropped %d packets:\n%s", got, out)
			}
		})
	}
}
