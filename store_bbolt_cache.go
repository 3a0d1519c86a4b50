package etagcache

import (
	"container/list"
	"sync"
)

// entryCache keeps recently used entries of a BoltStore decoded in memory,
// so that serving an entry again needs neither a read transaction nor a copy
// of its body. Only one BoltStore can hold a file, and every write goes
// through its write method, which updates the cache after each commit: so the
// cache never disagrees with the file. Entries are shared with callers of
// Get, which never modify them.
type entryCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	seq   uint64     // committed writes so far
	lru   *list.List // of *cachedEntry, most recently used at the front
	items map[string]*list.Element
}

type cachedEntry struct {
	rk   string
	e    *Entry
	size int64
}

func newEntryCache(max int64) *entryCache {
	return &entryCache{max: max, lru: list.New(), items: make(map[string]*list.Element)}
}

// get returns the cached entry of rk, or nil and the number of writes
// committed so far, to hand to fill after reading the entry from the file.
func (c *entryCache) get(rk []byte) (*Entry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[string(rk)]
	if !ok {
		return nil, c.seq
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedEntry).e, 0
}

// fill caches an entry read from the file, unless a write was committed
// since get returned seq: the read may then predate it.
func (c *entryCache) fill(rk string, e *Entry, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq == seq {
		c.addLocked(rk, e)
	}
}

// committed brings the cache up to date after a write transaction that
// removed the entries of removed and stored it (if not nil).
func (c *entryCache) committed(removed []string, it *boltItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for _, rk := range removed {
		c.removeLocked(rk)
	}
	if it == nil || it.entry == nil {
		return
	}
	if !it.headerOnly {
		c.addLocked(it.rk, it.entry)
		return
	}
	// A header update: keep the cached body under the new metadata.
	if el, ok := c.items[it.rk]; ok {
		ne := *it.entry
		ne.Body = el.Value.(*cachedEntry).e.Body
		c.addLocked(it.rk, &ne)
	}
}

func (c *entryCache) addLocked(rk string, e *Entry) {
	c.removeLocked(rk)
	n := entrySize(rk, "", e)
	if n > c.max {
		return
	}
	c.items[rk] = c.lru.PushFront(&cachedEntry{rk: rk, e: e, size: n})
	c.size += n
	for c.size > c.max {
		c.removeLocked(c.lru.Back().Value.(*cachedEntry).rk)
	}
}

func (c *entryCache) removeLocked(rk string) {
	if el, ok := c.items[rk]; ok {
		c.size -= el.Value.(*cachedEntry).size
		c.lru.Remove(el)
		delete(c.items, rk)
	}
}
