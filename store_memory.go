package etagcache

import (
	"container/list"
	"context"
	"math"
	"sync"
)

const defaultMemoryMaxBytes = 64 << 20

// MemoryStore is a Store that keeps entries in memory, evicting the least
// recently used ones when their total size passes a bound. It is safe for
// concurrent use. Entries are kept as given: a hit copies no body bytes.
type MemoryStore struct {
	mu       sync.Mutex
	maxBytes int64
	size     int64
	lru      *list.List // of *memItem, most recently used at the front
	items    map[string]map[string]*list.Element
}

type memItem struct {
	key, variant string
	entry        *Entry
	size         int64
}

// NewMemoryStore returns an empty MemoryStore holding at most maxBytes of
// entries (bodies, headers and keys). As for every size in this module, 0
// means the default, 64 MiB, and a negative maxBytes means no bound (the
// store then grows with every new resource and variant: use it only for a
// known, small set of URLs). An entry larger than the bound on its own is
// not kept.
func NewMemoryStore(maxBytes int64) *MemoryStore {
	switch {
	case maxBytes == 0:
		maxBytes = defaultMemoryMaxBytes
	case maxBytes < 0:
		maxBytes = math.MaxInt64
	}
	return &MemoryStore{maxBytes: maxBytes, lru: list.New(), items: make(map[string]map[string]*list.Element)}
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, key, variant string) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[key][variant]
	if !ok {
		return nil, ErrNotFound
	}
	s.lru.MoveToFront(el)
	return el.Value.(*memItem).entry, nil
}

// Put implements Store.
func (s *MemoryStore) Put(ctx context.Context, key, variant string, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	it := &memItem{key: key, variant: variant, entry: e, size: entrySize(key, variant, e)}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(key, variant)
	if it.size > s.maxBytes {
		return nil
	}
	vs := s.items[key]
	if vs == nil {
		vs = make(map[string]*list.Element, 1)
		s.items[key] = vs
	}
	vs[variant] = s.lru.PushFront(it)
	s.size += it.size
	s.evict()
	return nil
}

// UpdateHeader implements HeaderUpdater: the stored body is kept as it is.
// An entry replaced meanwhile by one with other validators is left alone
// and reported as ErrNotFound.
func (s *MemoryStore) UpdateHeader(ctx context.Context, key, variant string, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.items[key][variant]
	if !ok {
		return ErrNotFound
	}
	it := el.Value.(*memItem)
	if !it.entry.SameValidators(e) {
		return ErrNotFound
	}
	// Entries handed out by Get are immutable, so replace rather than modify.
	ne := *e
	ne.Body = it.entry.Body
	s.size -= it.size
	it.entry = &ne
	it.size = entrySize(key, variant, &ne)
	s.size += it.size
	s.lru.MoveToFront(el)
	s.evict()
	return nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for variant := range s.items[key] {
		s.remove(key, variant)
	}
	return nil
}

// Clear removes every entry, as if the store had just been made. Transports
// using the store go on with an empty cache: their next GET of each
// resource is a full fetch.
func (s *MemoryStore) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lru.Init()
	clear(s.items)
	s.size = 0
}

// Len reports the number of entries held.
func (s *MemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Size reports the bytes accounted to the entries held.
func (s *MemoryStore) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

func (s *MemoryStore) remove(key, variant string) {
	vs := s.items[key]
	el, ok := vs[variant]
	if !ok {
		return
	}
	delete(vs, variant)
	if len(vs) == 0 {
		delete(s.items, key)
	}
	s.size -= el.Value.(*memItem).size
	s.lru.Remove(el)
}

// evict removes least recently used entries until the rest fit the bound.
func (s *MemoryStore) evict() {
	for s.size > s.maxBytes {
		old := s.lru.Back().Value.(*memItem)
		s.remove(old.key, old.variant)
	}
}

// entrySize is an estimate of the memory an entry holds: exact for the body,
// approximate (string bytes plus a fixed overhead) for the rest.
func entrySize(key, variant string, e *Entry) int64 {
	const overhead = 16
	n := len(key) + len(variant) + len(e.Body) + len(e.VaryDigest) + 128
	for _, v := range e.VaryNames {
		n += len(v) + overhead
	}
	for k, vs := range e.Header {
		n += len(k) + overhead
		for _, v := range vs {
			n += len(v) + overhead
		}
	}
	return int64(n)
}
