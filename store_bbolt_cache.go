package etagcache

import (
	"context"
	"sync"
)

// entryCache keeps recently used entries of a BoltStore decoded in memory,
// in a MemoryStore keyed by record key, so that serving an entry again needs
// neither a read transaction nor a copy of its body. Only one BoltStore can
// hold a file, and every write goes through its write method, which updates
// the cache after each commit: so the cache never disagrees with the file.
// Entries are shared with callers of Get, which never modify them.
//
// The MemoryStore's calls cannot be cancelled and fail only with
// ErrNotFound, so they run on a background context.
type entryCache struct {
	mu  sync.Mutex   // orders fills after reads against commits
	seq uint64       // committed writes so far
	mem *MemoryStore // nil when the cache is off
}

func newEntryCache(max int64) *entryCache {
	c := &entryCache{}
	if max > 0 {
		c.mem = NewMemoryStore(max)
	}
	return c
}

// get returns the cached entry of rk, or nil and the number of writes
// committed so far, to hand to fill after reading the entry from the file.
func (c *entryCache) get(rk []byte) (*Entry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		return nil, c.seq
	}
	if e, err := c.mem.Get(context.Background(), string(rk), ""); err == nil {
		return e, 0
	}
	return nil, c.seq
}

// fill caches an entry read from the file, unless a write was committed
// since get returned seq: the read may then predate it.
func (c *entryCache) fill(rk string, e *Entry, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem != nil && c.seq == seq {
		_ = c.mem.Put(context.Background(), rk, "", e)
	}
}

// committed brings the cache up to date after a write transaction that
// removed the entries of removed and stored it (if not nil).
func (c *entryCache) committed(removed []string, it *boltItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if c.mem == nil {
		return
	}
	for _, rk := range removed {
		_ = c.mem.Delete(context.Background(), rk)
	}
	switch {
	case it == nil || it.entry == nil:
	case it.headerOnly:
		// Keeps the cached body under the new metadata; nothing to do when
		// the entry is not cached.
		_ = c.mem.UpdateHeader(context.Background(), it.rk, "", it.entry)
	default:
		_ = c.mem.Put(context.Background(), it.rk, "", it.entry)
	}
}
