package etagcache

import (
	"context"
	"sync"
)

// entryCache keeps recently used entries of a BoltStore decoded in memory,
// in a MemoryStore keyed by record key, so that serving an entry again needs
// neither a read transaction nor a copy of its body. Its content is that of
// the file as of one generation (see BoltStore): it is only used while the
// file's generation is still that one, and emptied when it has moved on
// through another process's write. This process's own writes bring it up to
// date instead. Entries are shared with callers of Get, which never modify
// them.
//
// The MemoryStore's calls cannot be cancelled and fail only with
// ErrNotFound, so they run on a background context.
type entryCache struct {
	mu    sync.Mutex
	gen   uint64       // the generation the content matches
	valid bool         // gen means something
	mem   *MemoryStore // nil when the cache is off
}

func newEntryCache(max int64) *entryCache {
	c := &entryCache{}
	if max > 0 {
		c.mem = NewMemoryStore(max)
	}
	return c
}

// get returns the cached entry of rk if the file is still at the cache's
// generation, or nil.
func (c *entryCache) get(rk string, gen uint64) *Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil || !c.valid || c.gen != gen {
		return nil
	}
	if e, err := c.mem.Get(context.Background(), rk, ""); err == nil {
		return e
	}
	return nil
}

// moveTo makes the cache describe generation gen, emptying it if it
// described another.
func (c *entryCache) moveTo(gen uint64) {
	if !c.valid || c.gen != gen {
		c.mem = NewMemoryStore(c.mem.maxBytes)
	}
	c.gen, c.valid = gen, true
}

// fill caches an entry read from the file at generation gen, unless the
// cache already describes a later one.
func (c *entryCache) fill(rk string, e *Entry, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil || (c.valid && gen < c.gen) {
		return
	}
	c.moveTo(gen)
	_ = c.mem.Put(context.Background(), rk, "", e)
}

// committed brings the cache up to date after a write transaction that
// took the file from generation from to to: the entries of removed were
// removed, those of stored written, and those of headers given new
// metadata.
func (c *entryCache) committed(from, to uint64, removed []string, stored, headers map[string]*Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		return
	}
	c.moveTo(from)
	c.gen = to
	for _, rk := range removed {
		_ = c.mem.Delete(context.Background(), rk)
	}
	for rk, e := range stored {
		_ = c.mem.Put(context.Background(), rk, "", e)
	}
	for rk, e := range headers {
		// Keeps the cached body under the new metadata; nothing to do when
		// the entry is not cached.
		_ = c.mem.UpdateHeader(context.Background(), rk, "", e)
	}
}

// reset empties the cache.
func (c *entryCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem != nil {
		c.mem = NewMemoryStore(c.mem.maxBytes)
	}
	c.valid = false
}

// stats reports the bytes and entries held, for tests.
func (c *entryCache) stats() (size int64, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mem == nil {
		return 0, 0
	}
	return c.mem.Size(), c.mem.Len()
}
