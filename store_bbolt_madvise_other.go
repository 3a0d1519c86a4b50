//go:build !linux

package etagcache

// dropMapped does nothing outside Linux.
func dropMapped([]byte) {}
