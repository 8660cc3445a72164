package e2e_test

import (
	"os"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/e2e/lab"
)

// ipv6BackendsConfig returns labConfig(t, encap) with every backend's
// IPv4 address replaced by its IPv6 one, so that xlb reaches every backend
// over an IPv6 outer header (source6) whatever the client's family.
func ipv6BackendsConfig(t *testing.T, l *lab.Lab, encap string) string {
	t.Helper()
	path := labConfig(t, encap)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	for _, be := range l.Backends() {
		v4 := `address = "` + be.Addr4.String() + `"`
		if !strings.Contains(s, v4) {
			t.Fatalf("examples/lab/lab.hcl no longer gives backend %s the address %s; update this test", be.Name, be.Addr4)
		}
		s = strings.Replace(s, v4, `address = "`+be.Addr6.String()+`"`, 1)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestIPv6Backends: with every backend at an IPv6 address, HTTP over new
// connections and over one keep-alive connection gets through xlb to the
// IPv6 VIP (IPv6 in IPv6: GRE over IPv6, or RFC 2473 next header 41) and
// to the IPv4 VIP (IPv4 in IPv6: GRE over IPv6, or next header 4). The
// backends decapsulate in user space and count what they took; none of it
// may be malformed, unsupported or for another address, and xlb drops
// nothing.
func TestIPv6Backends(t *testing.T) {
	for _, encap := range []string{"GREEncap", "IPIPEncap"} {
		t.Run(encap, func(t *testing.T) {
			l, b := serving(t, true)
			x, err := l.StartXLBD(l.LB(0), b["xlbd"], ipv6BackendsConfig(t, l, encap), "-var", "interface="+l.LB(0).Iface)
			if err != nil {
				t.Fatal(err)
			}
			for _, url := range []string{"http://" + l.VIP().String() + "/", "http://[" + l.VIP6().String() + "]/"} {
				s, err := l.RunClient(b["xlb-client"], "-url", url, "-n", "90", "-c", "6")
				if err != nil || s.OK != 90 || len(s.Backends) != 3 {
					t.Errorf("%s: %+v %v, want 90 ok, from all three backends", url, s, err)
				}
				s, err = l.RunClient(b["xlb-client"], "-url", url, "-n", "20", "-keepalive")
				if err != nil || s.OK != 20 || s.Connections != 1 || len(s.Backends) != 1 {
					t.Errorf("%s keep-alive: %+v %v, want 20 ok over one connection from one backend", url, s, err)
				}
			}
			for _, be := range l.Backends() {
				st, err := l.BackendStats(be.Name)
				if err != nil {
					t.Fatal(err)
				}
				decap := map[string]uint64{"GREEncap": st.DecapGRE, "IPIPEncap": st.DecapIPIP}[encap]
				if decap == 0 || st.DecapGRE+st.DecapIPIP != decap || st.Malformed+st.Unsupported+st.NotLocal+st.TunErrors != 0 {
					t.Errorf("%s: %+v, want only %s packets, all decapsulated", be.Name, st, encap)
				}
			}
			out, err := x.Stop()
			if err != nil {
				t.Fatalf("xlbd: %v\n%s", err, x.Log())
			}
			if !strings.Contains(out, "drop (Discard)\n  in  in                      0\n") {
				t.Errorf("xlbd dropped packets:\n%s", out)
			}
		})
	}
}
