package e2e_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestOuterFragments: UDP datagrams of 1480 bytes without DF, from the
// client to an IPv4 VIP through GRE on 1500-byte links, do not fit the
// tunnel: xlbd sends each in two outer fragments (too_big_no_df's default)
// and every datagram reaches a backend's socket whole, the backends
// reassembling the outer packets before they decapsulate them.
func TestOuterFragments(t *testing.T) {
	l, b := serving(t, true)
	const port = 9000
	udpVIP := fmt.Sprintf("\nvip \"udp4\" {\n  address  = %q\n  protocol = \"udp\"\n  ports    = [%d]\n  pool     = \"web\"\n}\n", l.VIP(), port)
	x, err := l.StartXLBD(l.LB(0), b["xlbd"], labConfig(t, "GREEncap", udpVIP), "-var", "interface="+l.LB(0).Iface)
	if err != nil {
		t.Fatal(err)
	}

	// A socket on the VIP in every backend: the decapsulated datagram is
	// the kernel's, delivered as any other.
	var (
		mu  sync.Mutex
		got = map[string]int{} // whole datagrams by first payload byte and backend
		bad []string
	)
	var wg sync.WaitGroup
	var conns []net.PacketConn
	for _, be := range l.Backends() {
		var c net.PacketConn
		if err := l.Do(be.NS, func() (err error) {
			c, err = net.ListenPacket("udp4", netip.AddrPortFrom(l.VIP(), port).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				mu.Lock()
				if n != payloadLen || !bytes.Equal(buf[:n], datagram(buf[0])) {
					bad = append(bad, fmt.Sprintf("%s: %d bytes", be.Name, n))
				} else {
					got[be.Name+"/"+strconv.Itoa(int(buf[0]))]++
				}
				mu.Unlock()
			}
		})
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()

	// One socket per datagram, so that their flows spread over the
	// backends; DF clear (IP_PMTUDISC_DONT), as a router may fragment it.
	const datagrams = 16
	if err := l.Do(l.Client().NS, func() error {
		for i := range datagrams {
			var ctlErr error
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				if err := rc.Control(func(fd uintptr) {
					ctlErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
				}); err != nil {
					return err
				}
				return ctlErr
			}}
			c, err := d.Dial("udp4", netip.AddrPortFrom(l.VIP(), port).String())
			if err != nil {
				return err
			}
			_, err = c.Write(datagram(byte(i)))
			c.Close()
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	waitCount(&mu, func() int { return len(got) }, datagrams, 5*time.Second)
	mu.Lock()
	whole, badList := len(got), append([]string(nil), bad...)
	mu.Unlock()
	if whole != datagrams || len(badList) != 0 {
		t.Errorf("%d of %d datagrams reached a backend whole (%v); damaged: %v", whole, datagrams, got, badList)
	}
	var reassembled uint64
	for _, be := range l.Backends() {
		st, err := l.BackendStats(be.Name)
		if err != nil {
			t.Fatal(err)
		}
		reassembled += st.Reassembled
	}
	out, err := x.Stop()
	if err != nil {
		t.Fatalf("xlbd: %v\n%s", err, x.Log())
	}
	m := regexp.MustCompile(`xlb_encap_fragmented_total (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(datagrams) || reassembled != datagrams {
		t.Errorf("xlbd fragmented %v, the backends reassembled %d; want %d each:\n%s", m, reassembled, datagrams, out)
	}
}

// payloadLen makes a 1480-byte IPv4 datagram: 1500 with GRE's 24 bytes
// does not fit a 1500-byte link.
const payloadLen = 1480 - 20 - 8

// datagram is the payload of datagram i: its byte i, then a pattern.
func datagram(i byte) []byte {
	p := make([]byte, payloadLen)
	p[0] = i
	for j := 1; j < len(p); j++ {
		p[j] = byte(j * 7)
	}
	return p
}
