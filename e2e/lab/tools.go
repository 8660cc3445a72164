package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xlbproject/xlb/e2e/backend"
	"github.com/xlbproject/xlb/e2e/client"
)

// Build compiles the given packages ("./e2e/cmd/xlb-backend") of the
// module holding the current directory into dir, and returns the binaries'
// paths by base name. Tests call it once from TestMain.
func Build(dir string, pkgs ...string) (map[string]string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return nil, fmt.Errorf("lab: go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lab: go build %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	bins := map[string]string{}
	for _, p := range pkgs {
		bins[filepath.Base(p)] = filepath.Join(dir, filepath.Base(p))
	}
	return bins, nil
}

// StatsSocket is where backend name's xlb-backend serves its counters.
func (l *Lab) StatsSocket(name string) string {
	return filepath.Join(l.dir, name+".sock")
}

// StartBackends runs bin (xlb-backend) in every backend namespace, holding
// and serving the lab's VIPs, with extra flags appended, and waits until
// all are ready (their stats sockets answer), at most 5 seconds.
func (l *Lab) StartBackends(bin string, extra ...string) error {
	vips := []string{"-vip", VIP4.String()}
	if l.topo.IPv6 {
		vips = append(vips, "-vip", VIP6.String())
	}
	for _, b := range l.backends {
		args := append([]string{"-name", b.Name, "-iface", b.Iface, "-stats", l.StatsSocket(b.Name)}, vips...)
		if _, err := l.Start(b.NS, bin, append(args, extra...)...); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, b := range l.backends {
		for {
			_, err := l.BackendStats(b.Name)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("lab: backend %s not ready: %w", b.Name, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// BackendStats fetches backend name's counters from its stats socket.
func (l *Lab) BackendStats(name string) (backend.Stats, error) {
	sock := l.StatsSocket(name)
	hc := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
	resp, err := hc.Get("http://backend/stats")
	if err != nil {
		return backend.Stats{}, err
	}
	defer resp.Body.Close()
	var st backend.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return backend.Stats{}, err
	}
	return st, nil
}

// RunClient runs bin (xlb-client) in the client namespace with args and
// returns its summary. A run with failed requests returns the summary and
// no error; the caller judges it.
func (l *Lab) RunClient(bin string, args ...string) (client.Summary, error) {
	cmd := l.Exec(l.client.NS, bin, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	var s client.Summary
	if jerr := json.Unmarshal(out.Bytes(), &s); jerr != nil {
		return s, errors.Join(fmt.Errorf("lab: xlb-client output %q", out.String()), err, jerr)
	}
	l.logf("xlb-client %s: %s", strings.Join(args, " "), strings.Join(strings.Fields(out.String()), " "))
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		return s, err
	}
	return s, nil
}

// Dialer returns a client.DialFunc that opens its TCP connections in
// namespace ns (client.Hold's Dial): each socket is created there and then
// used from any goroutine.
func (l *Lab) Dialer(ns string) client.DialFunc {
	return func(local, remote netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		err := l.Do(ns, func() (err error) {
			c, err = client.Dial(local, remote)
			return err
		})
		return c, err
	}
}

// NetCounters returns namespace ns's protocol counters by name: those of
// /proc/net/snmp and /proc/net/netstat as group and name
// ("Tcp:RetransSegs", "TcpExt:TCPLossProbes", "Icmp:OutDestUnreachs"),
// those of /proc/net/snmp6 by their own name ("Icmp6OutDestUnreachs").
func (l *Lab) NetCounters(ns string) (map[string]uint64, error) {
	c := map[string]uint64{}
	err := l.Do(ns, func() error {
		// thread-self: /proc/net follows the process's main thread,
		// not this one.
		for _, name := range []string{"snmp", "netstat", "snmp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if err != nil {
				return err
			}
			// snmp and netstat: a line of names, then one of values, both
			// led by the group; snmp6: a name and a value a line.
			var names []string
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				switch {
				case len(f) == 2 && !strings.HasSuffix(f[0], ":"):
					c[f[0]], _ = strconv.ParseUint(f[1], 10, 64)
				case len(f) == 0:
				case names == nil || names[0] != f[0]:
					names = f
				default:
					for i := 1; i < len(f) && i < len(names); i++ {
						c[f[0]+names[i]], _ = strconv.ParseUint(f[i], 10, 64)
					}
					names = nil
				}
			}
		}
		return nil
	})
	return c, err
}
