package etagcache

import (
	"os"
	"syscall"
	"unsafe"
)

// dropMapped tells the kernel that this process no longer needs the whole
// pages of the memory-mapped file inside v, so that they stop counting
// towards its resident memory once copied (the page cache keeps them).
// Small values are left alone: the call would cost more than it saves.
func dropMapped(v []byte) {
	if len(v) < 256<<10 {
		return
	}
	ps := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	first := (start + ps - 1) &^ (ps - 1)
	last := (start + uintptr(len(v))) &^ (ps - 1)
	if last <= first {
		return
	}
	_ = syscall.Madvise(v[first-start:last-start], syscall.MADV_DONTNEED)
}
