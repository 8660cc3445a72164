// Package hugemem allocates the large tables the data path reads at
// random, such as ConnTrack's buckets, from memory the kernel may back
// with 2 MB pages.
//
// A flow table of a million flows is 72 MB: on 4 KB pages each look-up of
// a flow not seen for a while misses the TLB as well as the cache, and in
// a virtual machine a TLB miss walks two page tables. With 2 MB pages the
// whole table fits in the TLB. Go's heap does not ask for huge pages, and
// most distributions enable transparent huge pages only where a program
// asks (madvise), so the table is mapped here, aligned to 2 MB, and
// advised MADV_HUGEPAGE before it is first touched.
package hugemem

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// PageSize is the huge page size on amd64 and arm64 with 4 KB base pages.
const PageSize = 2 << 20

// Slice returns n zeroed values of T and the function that frees them.
// Tables smaller than a huge page come from Go's heap. Larger ones are
// mapped outside it, so T must hold no Go pointers: the garbage collector
// does not scan the mapping, and nothing may use the slice after free.
// Where the mapping fails, the table comes from Go's heap too: huge pages
// are an optimisation, never a condition.
func Slice[T any](n int) (s []T, free func()) {
	var zero T
	size := uintptr(n) * unsafe.Sizeof(zero)
	if size < PageSize {
		return make([]T, n), func() {}
	}
	length := (size + PageSize - 1) &^ (PageSize - 1)
	// One huge page more than needed, so that a 2 MB boundary falls in the
	// first; the ends beyond the aligned range are given back at once.
	raw, err := unix.MmapPtr(-1, 0, nil, length+PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]T, n), func() {}
	}
	start := (uintptr(raw) + PageSize - 1) &^ (PageSize - 1)
	if head := start - uintptr(raw); head > 0 {
		_ = unix.MunmapPtr(raw, head)
	}
	if tail := uintptr(raw) + length + PageSize - (start + length); tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(raw, start-uintptr(raw)+length), tail)
	}
	p := unsafe.Add(raw, start-uintptr(raw))
	// The advice may fail (a kernel without transparent huge pages): the
	// table then works on small pages, as from Go's heap.
	_ = unix.Madvise(unsafe.Slice((*byte)(p), length), unix.MADV_HUGEPAGE)
	return unsafe.Slice((*T)(p), n), func() { _ = unix.MunmapPtr(p, length) }
}
