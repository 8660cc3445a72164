package e2e_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/xlbproject/xlb/e2e/lab"
)

// TestPathMTU: every link of the lab is 1500 bytes, so a full-size client
// segment does not fit the tunnel. A 1 MB upload from the client, whose
// TCP has no MSS clamping, completes to the IPv4 and the IPv6 VIP, with
// GRE and IPIP: xlb answers the first full-size segments with ICMP
// Fragmentation Needed / Packet Too Big, and the client's kernel lowers
// its path MTU to what the tunnel leaves.
func TestPathMTU(t *testing.T) {
	for _, encap := range []string{"GREEncap", "IPIPEncap"} {
		t.Run(encap, func(t *testing.T) {
			l, x := setup(t, encap)
			for _, vip := range []netip.Addr{l.VIP(), l.VIP6()} {
				if err := upload(l, vip, 1<<20); err != nil {
					t.Fatalf("upload to %v: %v", vip, err)
				}
			}
			out, err := x.Stop()
			if err != nil {
				t.Fatalf("xlbd: %v\n%s", err, x.Log())
			}
			for _, typ := range []string{"frag_needed", "packet_too_big"} {
				m := regexp.MustCompile(`xlb_encap_icmp_sent_total\{type="` + typ + `"\} (\d+)`).FindStringSubmatch(out)
				if m == nil || m[1] == "0" {
					t.Errorf("xlbd sent no %s:\n%s", typ, out)
				}
			}
		})
	}
}

// upload POSTs n bytes to vip:80 from the client's namespace over one
// connection with the kernel's default options, and checks that the
// backend answers that it received all of them.
func upload(l *lab.Lab, vip netip.Addr, n int) error {
	c, err := dialClient(l, netip.AddrPortFrom(vip, 80).String(), 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	req := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", vip, n)
	if _, err := c.Write(append([]byte(req), bytes.Repeat([]byte{'x'}, n)...)); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Received"); resp.StatusCode != http.StatusOK || got != strconv.Itoa(n) {
		return fmt.Errorf("%s from %s, which received %s bytes of %d", resp.Status, resp.Header.Get("X-Backend"), got, n)
	}
	return nil
}

// dialClient opens a TCP connection to addr from the client's namespace,
// with a deadline d from now for everything done on it.
func dialClient(l *lab.Lab, addr string, d time.Duration) (net.Conn, error) {
	var c net.Conn
	// The socket is made in the namespace; it is used from anywhere.
	if err := l.Do(l.Client().NS, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
