package hugemem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

type line [64]byte

// TestSliceHuge maps a table larger than a huge page and checks that it is
// aligned, zeroed, writable to its end, and backed at least in part by
// huge pages where the kernel gives them on request.
func TestSliceHuge(t *testing.T) {
	const n = 8 * PageSize / 64
	s, free := Slice[line](n)
	defer free()
	if len(s) != n {
		t.Fatalf("len %d, want %d", len(s), n)
	}
	start := uintptr(unsafe.Pointer(&s[0]))
	if start%PageSize != 0 {
		t.Fatalf("table at %#x, not aligned to 2 MB", start)
	}
	for i := range s {
		if s[i][0] != 0 || s[i][63] != 0 {
			t.Fatalf("line %d not zeroed", i)
		}
		s[i][0], s[i][63] = byte(i), byte(i>>8)
	}
	thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(thp), "[never]") {
		t.Skipf("transparent huge pages unavailable (%q, %v): the table works on small pages", thp, err)
	}
	if kb := anonHugeKB(t, start); kb == 0 {
		t.Errorf("no huge page backs the table at %#x (transparent_hugepage %q)", start, strings.TrimSpace(string(thp)))
	} else {
		t.Logf("%d MB of %d on huge pages", kb>>10, n*64>>20)
	}
}

// TestSliceSmall takes a table smaller than a huge page from Go's heap.
func TestSliceSmall(t *testing.T) {
	s, free := Slice[line](100)
	defer free()
	if len(s) != 100 {
		t.Fatalf("len %d", len(s))
	}
	s[99][0] = 1
}

// anonHugeKB is AnonHugePages of the mapping of /proc/self/smaps that
// starts at start.
func anonHugeKB(t *testing.T, start uintptr) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if r, _, ok := strings.Cut(l, " "); ok && strings.Contains(r, "-") {
			in = strings.HasPrefix(r, fmt.Sprintf("%x-", start))
			continue
		}
		if v, ok := strings.CutPrefix(l, "AnonHugePages:"); in && ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	t.Fatalf("no mapping at %#x in /proc/self/smaps", start)
	return 0
}
