package main

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/affinity"
)

func TestPlanPlacement(t *testing.T) {
	for _, tc := range []struct {
		name     string
		allowed  []int
		n        int
		want     []int
		workers  []int
		spare    []int
		errIsSet bool
	}{
		{name: "first CPUs, the rest spare", allowed: []int{0, 1, 2, 3}, n: 2, workers: []int{0, 1}, spare: []int{2, 3}},
		{name: "chosen CPUs", allowed: []int{0, 1, 2, 3}, n: 2, want: []int{3, 1}, workers: []int{3, 1}, spare: []int{0, 2}},
		{name: "one CPU: no spare", allowed: []int{1}, n: 1, workers: []int{1}},
		{name: "more workers than CPUs: no spare", allowed: []int{0, 1}, n: 3, workers: []int{0, 1}},
		{name: "chosen CPU outside the mask", allowed: []int{0, 1}, n: 1, want: []int{2}, errIsSet: true},
		{name: "empty mask", n: 1, errIsSet: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planPlacement(tc.allowed, tc.n, tc.want)
			if tc.errIsSet {
				if err == nil {
					t.Fatalf("got %v, want an error", p.workers)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.workers, tc.workers) || p.spare != affinity.Set(tc.spare) {
				t.Errorf("workers %v, spare %v; want %v, %v", p.workers, affinity.List(p.spare), tc.workers, tc.spare)
			}
		})
	}
}

// TestConfineThreads: after confine and pin, the worker's thread runs on
// its CPU alone and every other thread of the process, those that existed
// and those the runtime created afterwards (from the worker's locked
// thread too), on the spare CPUs. It reads what the kernel says,
// /proc/self/task/*/status's Cpus_allowed_list, and puts every thread back
// on the whole mask at the end.
func TestConfineThreads(t *testing.T) {
	cpus, err := affinity.Mask()
	if err != nil {
		t.Fatal(err)
	}
	if len(cpus) < 2 {
		t.Skipf("needs two CPUs in the affinity mask, has %v", cpus)
	}
	t.Cleanup(func() {
		if err := affinity.SetAllThreads(affinity.Set(cpus)); err != nil {
			t.Errorf("restoring the mask: %v", err)
		}
	})
	workerCPU := cpus[len(cpus)-1]
	p, err := planPlacement(cpus, 1, []int{workerCPU})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := p.confine(); !ok || err != nil {
		t.Fatalf("confine = %v, %v", ok, err)
	}

	// The worker: pinned on a locked thread, it starts goroutines that
	// block in system calls, so that the runtime needs new threads and
	// creates some of them on the worker's behalf.
	var r, w [8]int
	for i := range r {
		fds := make([]int, 2)
		if err := unix.Pipe2(fds, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		r[i], w[i] = fds[0], fds[1]
	}
	workerTid := make(chan int)
	release := make(chan struct{})
	var blocked sync.WaitGroup
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := p.pin(0); err != nil {
			t.Error(err)
		}
		for i := range r {
			blocked.Add(1)
			go func() {
				defer blocked.Done()
				var b [1]byte
				_, _ = unix.Read(r[i], b[:])
			}()
		}
		runtime.GC()
		workerTid <- unix.Gettid()
		<-release
	}()
	tid := <-workerTid
	// Let the readers block: each holds a thread of its own.
	waitThreads(len(r) + 2)
	runtime.GC()

	threads := 0
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "status"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		got := allowedList(t, string(b))
		want := affinity.List(p.spare)
		if e.Name() == strconv.Itoa(tid) {
			want = []int{workerCPU}
		}
		if !slices.Equal(got, want) {
			t.Errorf("thread %s (worker %v) may run on CPUs %v, want %v", e.Name(), e.Name() == strconv.Itoa(tid), got, want)
		}
		threads++
	}
	close(release)
	for i := range w {
		_, _ = unix.Write(w[i], []byte{0})
	}
	blocked.Wait()
	for i := range r {
		unix.Close(r[i])
		unix.Close(w[i])
	}
	if threads < len(r)+2 {
		t.Errorf("only %d threads: the test did not make the runtime create any", threads)
	}
}

// waitThreads waits, up to a while, until the process has n threads.
func waitThreads(n int) {
	for i := 0; i < 5000; i++ {
		if ents, _ := os.ReadDir("/proc/self/task"); len(ents) >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// allowedList reads Cpus_allowed_list from a thread's status file.
func allowedList(t *testing.T, status string) []int {
	t.Helper()
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			cpus, err := affinity.Parse(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return cpus
		}
	}
	t.Fatal("no Cpus_allowed_list in the thread's status")
	return nil
}
