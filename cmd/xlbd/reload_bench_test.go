package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	xhcl "github.com/xlbproject/xlb/hcl"
)

// cpuTime is the CPU time the process has used (every goroutine's, the
// collector's included): on a machine that other jobs share, the time
// a reload costs whatever the wait for a core, where ns/op includes it.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start as cpu-ms/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// reloadHeader is the part of a reload benchmark's configuration that is
// not VIPs: a pipeline that needs no device.
const reloadHeader = "hash_seed = 1\n\npipeline {\n  element \"RxPcap\" \"rx\" {\n    file = \"in.pcap\"\n  }\n  element \"Discard\" \"drop\" {}\n  connect = [\"rx -> drop\"]\n}\n"

// reloadVIP writes VIP v of a reload benchmark's configuration with its
// pool of n backends; weight is the weight of backend 42 of VIP 500.
func reloadVIP(w *bytes.Buffer, v, n, weight int) {
	fmt.Fprintf(w, "\nvip \"v%d\" {\n  address = \"100.%d.%d.1\"\n  ports   = [80, 443]\n  pool    = \"p%d\"\n}\n\npool \"p%d\" {\n", v, v>>8, v&255, v, v)
	for i := range n {
		k := v*n + i
		fmt.Fprintf(w, "  backend \"b%d-%d\" {\n    address = \"10.%d.%d.%d\"\n", v, i, k>>16&255, k>>8&255, k&255)
		if v == 500 && i == 42 {
			fmt.Fprintf(w, "    weight  = %d\n", weight)
		}
		w.WriteString("  }\n")
	}
	w.WriteString("}\n")
}

// reloadFile writes a file of vips VIPs, each on its own pool of n
// backends, with a pipeline that needs no device; weight is the weight of
// backend 42 of VIP 500 (when there are that many), so that two files
// differ in one backend.
func reloadFile(b *testing.B, vips, n int, weight int) string {
	var w bytes.Buffer
	w.WriteString(reloadHeader)
	for v := range vips {
		reloadVIP(&w, v, n, weight)
	}
	path := filepath.Join(b.TempDir(), fmt.Sprintf("reload-%d.hcl", weight))
	if err := os.WriteFile(path, w.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkReload is issue #10's reloads from the HCL file, without
// plugins: 1,000 VIPs × 100 backends (tables of the default size).
//   - full: the file applied to a new daemon's services (parse, validate,
//     1,000 table builds, publish);
//   - one-backend: two files that differ in one backend's weight applied
//     in turn (the whole file parsed and validated, one table built);
//   - parse-validate: what one-backend costs before the controller: the
//     file loaded and checked, nothing applied.
func BenchmarkReload(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	paths := [2]string{reloadFile(b, 1000, 100, 2), reloadFile(b, 1000, 100, 1)}
	apply := func(b *testing.B, s *services, path string, commit bool) {
		var out bytes.Buffer
		if _, err := s.transact(path, varFlags{}, &out, commit); err != nil {
			b.Fatalf("%v\n%.2000s", err, out.String())
		}
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			s, err := newServices("", false, log)
			if err != nil {
				b.Fatal(err)
			}
			apply(b, s, paths[0], true)
		}
		reportCPU(b, start)
	})
	b.Run("one-backend", func(b *testing.B) {
		s, err := newServices("", false, log)
		if err != nil {
			b.Fatal(err)
		}
		apply(b, s, paths[1], true)
		b.ReportAllocs()
		start := cpuTime(b)
		i := 0
		for b.Loop() {
			apply(b, s, paths[i%2], true)
			i++
		}
		reportCPU(b, start)
	})
	b.Run("parse-validate", func(b *testing.B) {
		s, err := newServices("", false, log)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			apply(b, s, paths[0], false)
		}
		reportCPU(b, start)
	})
}

// reloadFragments writes the main file of the same configuration as
// reloadFile's, and returns its VIPs as fragments, one per VIP with its
// pool, as a config source holds them (one etcd key or file each).
func reloadFragments(b *testing.B, vips, n int, weight int) (string, []xhcl.Fragment) {
	path := filepath.Join(b.TempDir(), "main.hcl")
	// The source that holds the fragments (no plugin is started).
	if err := os.WriteFile(path, []byte(reloadHeader+"\nsource \"etcd\" {}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	frags := make([]xhcl.Fragment, vips)
	for v := range vips {
		var w bytes.Buffer
		reloadVIP(&w, v, n, weight)
		frags[v] = xhcl.Fragment{Name: fmt.Sprintf("etcd:/xlb/vips/v%d", v), Src: w.Bytes()}
	}
	return path, frags
}

// BenchmarkReloadFragments is BenchmarkReload's configuration as a config
// source hands it over: the main file and 1,000 fragments, one per VIP
// with its pool, held in memory as the source holds them, applied as xlbd
// run applies a source's update (services.transactDocs, with the daemon's
// hcl.Cache and its precheck, which runs no child for literal documents):
//   - full: a new daemon's first load (every fragment parsed and decoded
//     on both cores, 1,000 table builds);
//   - one-backend: one fragment changed in turn between two texts that
//     differ in one backend's weight (that fragment parsed and decoded,
//     the configuration checked against the last, one table built).
func BenchmarkReloadFragments(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	path, frags := reloadFragments(b, 1000, 100, 2)
	docs := make([]sourceDoc, len(frags))
	for i, fr := range frags {
		docs[i] = sourceDoc{Source: "etcd", Name: fr.Name, Format: "hcl", Content: fr.Src}
	}
	var other bytes.Buffer
	reloadVIP(&other, 500, 100, 1)
	changed := [2][]byte{other.Bytes(), docs[500].Content}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	apply := func(b *testing.B, s *services) {
		var out bytes.Buffer
		f, err := s.transactDocs(path, varFlags{}, docs, &out, true)
		if err != nil {
			b.Fatalf("%v\n%.2000s", err, out.String())
		}
		if s.running == nil {
			s.running = f
			s.pre = &precheck{exe: exe, env: []string{asXLBD + "=1"}, heap: precheckHeap, cpu: precheckCPU}
			main, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			s.pre.evaluated(main, docs)
		}
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		start := cpuTime(b)
		for b.Loop() {
			s, err := newServices("", false, log)
			if err != nil {
				b.Fatal(err)
			}
			apply(b, s)
		}
		reportCPU(b, start)
	})
	b.Run("one-backend", func(b *testing.B) {
		s, err := newServices("", false, log)
		if err != nil {
			b.Fatal(err)
		}
		apply(b, s)
		b.ReportAllocs()
		start := cpuTime(b)
		i := 0
		for b.Loop() {
			docs[500].Content = changed[i%2]
			apply(b, s)
			i++
		}
		reportCPU(b, start)
	})
}
