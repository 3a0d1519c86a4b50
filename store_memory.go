package etagcache

import (
	"container/list"
	"context"
	"hash/maphash"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const defaultMemoryMaxBytes = 64 << 20

// MemoryStore is a Store that keeps entries in memory, evicting the least
// recently used ones when their total size passes a bound. It is safe for
// concurrent use. Entries are kept as given: a hit copies no body bytes.
//
// It is a HeaderUpdater and an Invalidator. It remembers the invalidations
// of up to 4096 keys (one per 4 KiB of the bound, at least 64, below
// 16 MiB), about 64 bytes each, outside the bound and Size; past that it
// forgets the oldest and drops every Put requested before the latest one
// it forgot. Keys are remembered by a 64-bit hash: two keys that share one
// (a chance in 2^64 per pair) share their invalidations, which costs
// misses, never a stale entry.
type MemoryStore struct {
	mu       sync.Mutex
	maxBytes int64
	size     int64
	lru      *list.List // of *memItem, most recently used at the front
	items    map[string]map[string]*list.Element
	// templates counts the bytes of the header templates that fresh hits
	// keep beside their entries (entry_facts.go); they are made outside the
	// lock, so the bound is enforced with them at the next write.
	templates atomic.Int64
	tombs     tombstones // invalidations remembered (Invalidate)
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
	return &MemoryStore{maxBytes: maxBytes, lru: list.New(), items: make(map[string]map[string]*list.Element),
		tombs: tombstones{seed: maphash.MakeSeed(), limit: int(min(max(maxBytes>>12, minTombstones), maxTombstones)), floor: math.MinInt64}}
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, key, variant string) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e := s.use(s.items[key][variant])
	s.mu.Unlock()
	if e == nil {
		return nil, ErrNotFound
	}
	return e, nil
}

// getKeyBytes is Get for a key held in bytes: indexing with string(key)
// does not allocate.
func (s *MemoryStore) getKeyBytes(key []byte, variant string) *Entry {
	s.mu.Lock()
	e := s.use(s.items[string(key)][variant])
	s.mu.Unlock()
	return e
}

// use marks the item el as the most recently used and returns its entry,
// or nil when el is nil. The caller holds s.mu: UpdateHeader replaces
// entries under it.
func (s *MemoryStore) use(el *list.Element) *Entry {
	if el == nil {
		return nil
	}
	s.lru.MoveToFront(el)
	return el.Value.(*memItem).entry
}

// Put implements Store.
func (s *MemoryStore) Put(ctx context.Context, key, variant string, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The copy carries a memo of what hits derive from it (entry_facts.go).
	e = withMemo(e, &s.templates)
	it := &memItem{key: key, variant: variant, entry: e, size: entrySize(key, variant, e)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tombs.refuses(key, e.RequestTime) {
		return nil // requested before an invalidation: older than what it removed
	}
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
// An entry replaced meanwhile, by one with another body or other
// validators, is left alone and reported as ErrNotFound. The body Get
// handed out is the one kept, so confirming it reads no byte of it.
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
	if !sameBody(it.entry.Body, e.Body) || !it.entry.SameValidators(e) {
		return ErrNotFound
	}
	// Entries handed out by Get are immutable, so replace rather than modify.
	ne := withMemo(e, &s.templates)
	ne.Body = it.entry.Body
	it.entry.memo.release()
	s.size -= it.size
	it.entry = ne
	it.size = entrySize(key, variant, ne)
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
	s.removeKey(key)
	return nil
}

// Invalidate implements Invalidator: every variant of key is removed, and
// a later Put under key of an entry requested before at is dropped (see
// MemoryStore for how many invalidations are remembered).
func (s *MemoryStore) Invalidate(ctx context.Context, key string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeKey(key)
	s.tombs.add(key, at)
	return nil
}

// Clear removes every entry, as if the store had just been made. Transports
// using the store go on with an empty cache: their next GET of each
// resource is a full fetch. Invalidations are still remembered: an older
// response still arriving is no fresher for the Clear.
func (s *MemoryStore) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for el := s.lru.Front(); el != nil; el = el.Next() {
		el.Value.(*memItem).entry.memo.release()
	}
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
	return s.size + s.templates.Load()
}

// removeKey removes every variant of key; s.mu is held.
func (s *MemoryStore) removeKey(key string) {
	for variant := range s.items[key] {
		s.remove(key, variant)
	}
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
	it := el.Value.(*memItem)
	s.size -= it.size
	it.entry.memo.release()
	s.lru.Remove(el)
}

// evict removes least recently used entries until the rest fit the bound.
func (s *MemoryStore) evict() {
	for s.size+s.templates.Load() > s.maxBytes && s.lru.Len() > 0 {
		old := s.lru.Back().Value.(*memItem)
		s.remove(old.key, old.variant)
	}
}

// entrySize is an estimate of the memory an entry holds in a MemoryStore,
// as the Go allocator hands it out: the body's whole capacity and every
// string and slice rounded up to its size class, plus the structures around
// them. Measured with Go 1.26 on amd64, it is within a few percent of the
// live heap an entry costs (TestMemoryStoreBoundHoldsOnHeap).
func entrySize(key, variant string, e *Entry) int64 {
	// The Entry copy with its memo (384 B, entry_facts.go), memItem, list
	// element, the per-key map of variants and a slot in the map of keys,
	// and a header map of up to 8 fields. The header template of an entry
	// served by fresh hits is counted when it is made (templateSize).
	const entryOverhead = 1180
	const stringHeader = 16
	n := entryOverhead + headerMapSize(len(e.Header)) +
		allocSize(cap(e.Body)) + allocSize(len(key)) + allocSize(len(variant)) +
		allocSize(cap(e.VaryDigest)) + allocSize(stringHeader*cap(e.VaryNames))
	for _, v := range e.VaryNames {
		n += allocSize(len(v))
	}
	for k, vs := range e.Header {
		n += allocSize(len(k)) + allocSize(stringHeader*cap(vs))
		for _, v := range vs {
			n += allocSize(len(v))
		}
	}
	return int64(n)
}

// headerMapSize is what a header map of more than 8 fields costs beyond the
// one group of 8 slots that entryOverhead counts: a table of slots (a string
// key and a []string, 40 bytes, plus a control byte) kept at most 7/8 full.
func headerMapSize(fields int) int {
	if fields <= 8 {
		return 0
	}
	slots := 16
	for slots*7/8 < fields {
		slots *= 2
	}
	return slots*41 + 64 - 352
}

// allocSize is the memory the Go allocator uses for an object of n bytes:
// n rounded up to its size class (the runtime's table, which has been stable
// for years), or to whole 8 KiB pages for large objects.
func allocSize(n int) int {
	if n <= 0 {
		return 0
	}
	if n > maxSmallSize {
		return (n + pageSize - 1) / pageSize * pageSize
	}
	i, _ := slices.BinarySearch(sizeClasses[:], uint16(n))
	return int(sizeClasses[i])
}

const (
	maxSmallSize = 32 << 10
	pageSize     = 8 << 10
)

var sizeClasses = [...]uint16{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
	256, 288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
	2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240,
	10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// Bounds of the invalidations a MemoryStore remembers.
const (
	minTombstones = 64
	maxTombstones = 4096
)

// tombstones are the invalidations a MemoryStore remembers: the latest
// time each key was invalidated at, by hash, and a floor, the latest such
// time forgotten. The caller holds the store's lock.
type tombstones struct {
	seed  maphash.Seed
	limit int
	at    map[uint64]int64 // nil until the first invalidation
	order []tombstone      // invalidations as they came, oldest first
	floor int64            // Puts requested before it are dropped
}

type tombstone struct {
	h  uint64
	at int64
}

// requestNano is RequestTime in Unix nanoseconds; a zero time is before
// every invalidation.
func requestNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// invalidationNano is an invalidation's at in Unix nanoseconds; even a
// zero at is after a zero RequestTime.
func invalidationNano(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64 + 1
	}
	return t.UnixNano()
}

func (ts *tombstones) add(key string, at time.Time) {
	if ts.at == nil {
		ts.at = make(map[uint64]int64)
	}
	h, n := maphash.String(ts.seed, key), invalidationNano(at)
	if old, ok := ts.at[h]; !ok || n > old {
		ts.at[h] = n
	}
	ts.order = append(ts.order, tombstone{h, n})
	for len(ts.order) > ts.limit {
		old := ts.order[0]
		ts.order = ts.order[1:]
		ts.floor = max(ts.floor, old.at)
		if ts.at[old.h] <= ts.floor {
			delete(ts.at, old.h) // the floor covers it
		}
	}
}

// refuses reports whether a Put under key of an entry requested at req
// must be dropped.
func (ts *tombstones) refuses(key string, req time.Time) bool {
	if ts.at == nil {
		return false // nothing ever invalidated
	}
	r := requestNano(req)
	if r < ts.floor {
		return true
	}
	at, ok := ts.at[maphash.String(ts.seed, key)]
	return ok && r < at
}
