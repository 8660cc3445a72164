package main

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/admin"
	"github.com/xlbproject/xlb/pipeline"
)

// testFlows is a source that sends, from worker 0 only, one TCP SYN for
// each of Flows clients (10.1.x.y:1000+n to 192.0.2.10:80), then idles
// as a live source does: an empty batch every few milliseconds.
type testFlows struct {
	Flows  int `hcl:"flows,optional"`
	worker int
	frames [][]byte
	sent   int
	pkts   [pipeline.MaxBatch]pipeline.Packet
}

func (s *testFlows) Provision(ctx *pipeline.Context) error {
	s.worker = ctx.Worker
	for n := range s.Flows {
		s.frames = append(s.frames, synFrame(flowClient(n), netip.MustParseAddr("192.0.2.10"), 80))
	}
	return nil
}

// flowClient is testFlows' client n.
func flowClient(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)}), uint16(1000+n))
}

func synFrame(src netip.AddrPort, dst netip.Addr, port uint16) []byte {
	buf := gopacket.NewSerializeBuffer()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(port), SYN: true, Window: 1024}
	_ = tcp.SetNetworkLayerForChecksum(ip)
	_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		&layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}, ip, tcp)
	return buf.Bytes()
}

func (s *testFlows) Pull(b *pipeline.Batch) error {
	b.Now = time.Now().UnixNano()
	if s.worker != 0 || s.sent == len(s.frames) {
		time.Sleep(5 * time.Millisecond)
		return nil
	}
	for i := range s.pkts {
		if s.sent == len(s.frames) {
			break
		}
		f := s.frames[s.sent]
		s.sent++
		buf := make([]byte, pipeline.Headroom+len(f))
		copy(buf[pipeline.Headroom:], f)
		s.pkts[i].SetFrame(buf, pipeline.Headroom, len(buf))
		b.Add(&s.pkts[i], 0)
	}
	return nil
}

func (s *testFlows) MaxWait() time.Duration { return 5 * time.Millisecond }

func init() {
	pipeline.Register(pipeline.ElementType{Name: "TestFlows", Outputs: []string{"out"}, New: func() pipeline.Element { return &testFlows{} }})
}

const flowsPools = `pool "web" {
  backend "a" {
    address = "198.51.100.1"
  }
  backend "b" {
    address = "198.51.100.2"
  }
  backend "c" {
    address = "198.51.100.3"
  }
}
vip "web" {
  address  = "192.0.2.10"
  protocol = "tcp"
  ports    = [80]
  pool     = "web"
}
`

const flowsConfig = `hash_seed = 7
pipeline {
  element "TestFlows" "rx" {
    flows = 300
  }
  element "Parse5Tuple" "parse" {}
  element "ConnTrack" "ct" {
    capacity = 4096
  }
  element "MaglevSelect" "sel" {}
  element "Discard" "out" {}
  element "Discard" "drop" {}
  connect = [
    "rx -> parse -> ct",
    "ct.hit -> out",
    "ct.miss -> sel -> ct.learn",
    "parse.bad -> drop",
    "sel.nobackend -> drop",
  ]
}
` + flowsPools

// TestRunFlows runs xlbd with two workers, worker 0 sending 300 flows,
// and asks it about them: ConnTrack per worker and per backend, a lookup
// of every flow (held by worker 0, on the backend Maglev picks while
// nothing changed; still held on a drained backend that Maglev no longer
// picks), a lookup for no VIP, and plans against the running
// configuration: one that removes a backend moves its flows, a broken one
// is refused with its diagnostics and changes nothing.
func TestRunFlows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.hcl")
	if err := os.WriteFile(path, []byte(flowsConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	cmd := startRun(t, nil, "-workers=2", "-admin-socket", sock, "-config", path)
	stderr := &cmd.stderr
	waitUntil(t, "the admin API listening", stderr, func() bool { return strings.Contains(stderr.String(), "admin API listening") })
	ctx := context.Background()
	c := admin.NewClient(sock)

	var ct admin.ConnTrack
	waitUntil(t, "300 flows in ConnTrack", stderr, func() bool {
		if err := c.Get(ctx, "/v1/conntrack", &ct); err != nil {
			t.Fatal(err)
		}
		return len(ct.Workers) == 2 && ct.Workers[0].Entries == 300
	})
	perBackend := map[string]uint64{}
	for _, f := range ct.Flows {
		perBackend[f.Backend] = f.Flows
	}
	if ct.Workers[1].Entries != 0 || ct.Workers[0].Capacity != 4096 || ct.Workers[0].Element != "ct" ||
		len(ct.Flows) != 3 || perBackend["a"]+perBackend["b"]+perBackend["c"] != 300 || perBackend["a"] == 0 {
		t.Fatalf("conntrack: %+v", ct)
	}

	look := func(n int) admin.Lookup {
		t.Helper()
		q := url.Values{"proto": {"tcp"}, "src": {flowClient(n).String()}, "dst": {"192.0.2.10:80"}}
		var l admin.Lookup
		if err := c.Get(ctx, "/v1/lookup?"+q.Encode(), &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	onA := 0
	for n := range 300 {
		l := look(n)
		if !l.Tracked || len(l.Workers) != 2 || !l.Workers[0].Held || l.Workers[1].Held ||
			l.Backend != l.Selected.Backend || l.Workers[0].Backend != l.Backend || l.Selected.VIP != "web" {
			t.Fatalf("flow %d before the drain: %+v", n, l)
		}
		if l.Backend == "a" {
			onA++
		}
	}
	if uint64(onA) != perBackend["a"] {
		t.Errorf("lookups put %d flows on a, conntrack %d", onA, perBackend["a"])
	}

	var res admin.Result
	if err := c.Post(ctx, "/v1/backends/a/drain", nil, &res); err != nil || !res.Applied {
		t.Fatalf("drain: %+v %v", res, err)
	}
	for n := range 300 {
		if l := look(n); l.Selected.Backend == "a" || l.Tracked && l.Workers[0].Backend != l.Backend {
			t.Fatalf("flow %d after draining a: %+v", n, l)
		} else if l.Workers[0].Backend == "a" && l.Backend != "a" {
			t.Fatalf("flow %d of a left it when drained: %+v", n, l)
		}
	}
	if err := c.Get(ctx, "/v1/conntrack?backend=a", &ct); err != nil || len(ct.Flows) != 1 || ct.Flows[0].Flows != perBackend["a"] {
		t.Errorf("conntrack?backend=a after the drain: %+v %v", ct, err)
	}

	var l admin.Lookup
	if err := c.Get(ctx, "/v1/lookup?proto=tcp&src=10.9.9.9:1&dst=192.0.2.10:81", &l); err != nil ||
		l.Selected.Reason != "maglev.novip" || !strings.Contains(l.NoVIP, "web (tcp port 80)") || l.Backend != "" {
		t.Errorf("lookup of port 81: %+v %v", l, err)
	}
	for _, bad := range []string{"proto=tcp&src=10.0.0.1&dst=192.0.2.10:80", "proto=tcp&src=[2001:db8::1]:1&dst=192.0.2.10:80", "proto=gre&src=1.2.3.4:1&dst=192.0.2.10:80"} {
		var ae *admin.APIError
		if err := c.Get(ctx, "/v1/lookup?"+bad, nil); !errors.As(err, &ae) || ae.Code != 400 {
			t.Errorf("lookup %s: %v, want a 400", bad, err)
		}
	}
	if err := c.Get(ctx, "/v1/conntrack?backend=zz", nil); err == nil || err.(*admin.APIError).Code != 404 {
		t.Errorf("conntrack of an unknown backend: %v, want a 404", err)
	}

	var st admin.Status
	if err := c.Get(ctx, "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	// b removed: its established flows are affected; a stays drained
	// (the override), not undrained by the plan.
	withoutB := strings.Replace(flowsConfig, "  backend \"b\" {\n    address = \"198.51.100.2\"\n  }\n", "", 1)
	var plan admin.PlanResult
	if err := c.Post(ctx, "/v1/plan", admin.PlanRequest{Name: "new.hcl", Text: withoutB}, &plan); err != nil {
		t.Fatal(err)
	}
	if !plan.FlowsCounted || len(plan.Affected) != 1 || plan.Affected[0] != (admin.AffectedFlows{VIP: "web", Flows: perBackend["b"]}) ||
		plan.Total.BackendsRemoved != 1 || plan.Total.BackendsUndrained != 0 || plan.PipelineChanged {
		t.Errorf("plan without b: %+v", plan)
	}
	var ae *admin.APIError
	err := c.Post(ctx, "/v1/plan", admin.PlanRequest{Name: "conf/new.hcl", Text: flowsConfig + "vip \"x\" {\n  adress = 1\n}\n"}, nil)
	if !errors.As(err, &ae) || ae.Code != 400 || !strings.Contains(ae.Body.Diagnostics, "conf/new.hcl:") || strings.Contains(ae.Body.Diagnostics, "xlbd-plan-") {
		t.Errorf("plan of a broken file: %v", err)
	}
	if err := c.Post(ctx, "/v1/plan", []byte(`{"name": 1}`), nil); !errors.As(err, &ae) || ae.Code != 400 {
		t.Errorf("plan of malformed JSON: %v", err)
	}
	var after admin.Status
	if err := c.Get(ctx, "/v1/status", &after); err != nil || after.Generation != st.Generation {
		t.Errorf("plans changed the generation: %d, was %d (%v)", after.Generation, st.Generation, err)
	}
}
