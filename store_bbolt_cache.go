package etagcache

import (
	"container/list"
	"sync"
)

// bodyCache keeps recently read bodies of a BoltStore in memory, so that a
// revalidation of a large entry serves the body without copying it out of
// the file again. A cached body is used only when its id equals the body id
// in the meta record read in the same transaction: ids are random and
// written with the body, so an entry rewritten meanwhile never matches a
// body it no longer has. Bodies are shared with the entries returned by Get,
// which nobody modifies.
type bodyCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	lru   *list.List // of *cachedBody, most recently used at the front
	items map[string]*list.Element
}

type cachedBody struct {
	rk   string
	id   uint64
	body []byte
}

func newBodyCache(max int64) *bodyCache {
	return &bodyCache{max: max, lru: list.New(), items: make(map[string]*list.Element)}
}

// get returns the cached body of rk if it is the body with this id.
func (c *bodyCache) get(rk []byte, id uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[string(rk)]
	if !ok || el.Value.(*cachedBody).id != id {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedBody).body, true
}

// add caches body as the body with this id of rk, evicting the least
// recently used bodies past the bound; a body larger than it is not kept.
func (c *bodyCache) add(rk string, id uint64, body []byte) {
	n := int64(len(body))
	if n == 0 || n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(rk)
	c.items[rk] = c.lru.PushFront(&cachedBody{rk: rk, id: id, body: body})
	c.size += n
	for c.size > c.max {
		c.removeLocked(c.lru.Back().Value.(*cachedBody).rk)
	}
}

// remove forgets the body of each record key.
func (c *bodyCache) remove(rks ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rk := range rks {
		c.removeLocked(rk)
	}
}

func (c *bodyCache) removeLocked(rk string) {
	if el, ok := c.items[rk]; ok {
		c.size -= int64(len(el.Value.(*cachedBody).body))
		c.lru.Remove(el)
		delete(c.items, rk)
	}
}
