package redisstore

import (
	"container/list"
	"sync"
)

// localBodies keeps recently used bodies in memory, keyed by their SHA-256,
// least recently used out first once their total size passes max. A body
// never changes under its digest, so nothing written to Redis by anyone can
// make an entry here wrong: the layer needs no invalidation. Bodies are
// shared with the entries handed out, which nobody modifies.
type localBodies struct {
	mu    sync.Mutex
	max   int64
	size  int64
	lru   *list.List // of *localBody, most recently used at the front
	items map[[digestLen]byte]*list.Element
}

type localBody struct {
	digest [digestLen]byte
	body   []byte
}

// newLocalBodies returns a layer of at most max bytes, or nil (off) when
// max <= 0. The methods of a nil layer hold nothing.
func newLocalBodies(max int64) *localBodies {
	if max <= 0 {
		return nil
	}
	return &localBodies{max: max, lru: list.New(), items: make(map[[digestLen]byte]*list.Element)}
}

// get returns the body with digest d, if held.
func (l *localBodies) get(d [digestLen]byte) ([]byte, bool) {
	if l == nil {
		return nil, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[d]
	if !ok {
		return nil, false
	}
	l.lru.MoveToFront(el)
	return el.Value.(*localBody).body, true
}

// put keeps body, whose digest the caller computed or verified, unless it
// is larger than the whole layer.
func (l *localBodies) put(d [digestLen]byte, body []byte) {
	if l == nil || len(body) == 0 || int64(len(body)) > l.max {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[d]; ok {
		l.lru.MoveToFront(el)
		return
	}
	l.items[d] = l.lru.PushFront(&localBody{digest: d, body: body})
	l.size += int64(len(body))
	for l.size > l.max {
		old := l.lru.Remove(l.lru.Back()).(*localBody)
		delete(l.items, old.digest)
		l.size -= int64(len(old.body))
	}
}

// stats returns the number of bodies held and their total size.
func (l *localBodies) stats() (int, int64) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len(), l.size
}
