package etagcache

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrStoreClosed is wrapped by the error of every BoltStore method called
	// after Close.
	ErrStoreClosed = errors.New("etagcache: store is closed")
	// ErrStoreLocked is wrapped by the error of OpenBoltStore when another
	// process, or another open BoltStore of this process, holds the file and
	// does not release it within the lock timeout.
	ErrStoreLocked = errors.New("etagcache: store file is in use")
	// ErrIncompatibleFile is wrapped by the error of OpenBoltStore when the
	// file exists but cannot be used as a store: it is not a bbolt database,
	// it is a bbolt database of another program, or it was written with a
	// schema version this code does not know. The file is left untouched.
	ErrIncompatibleFile = errors.New("etagcache: file is not a usable etagcache store")
)

const (
	defaultBoltMaxBytes    = 1 << 30
	defaultBoltLockTimeout = time.Second
	defaultBoltCache       = 64 << 20
)

type boltConfig struct {
	maxBytes    int64
	lockTimeout time.Duration
	cache       int64
}

// BoltOption configures OpenBoltStore.
type BoltOption func(*boltConfig)

// WithBoltMaxBytes bounds the bytes the store keeps: the sum over entries of
// body, encoded metadata and record keys. When a Put or UpdateHeader would
// pass it, the least recently used entries are removed in the same
// transaction; an entry larger than the bound on its own is not kept. n <= 0
// means no bound. The default is 1 GiB. The file itself can be larger than
// the bound (page granularity, free pages) and never shrinks.
func WithBoltMaxBytes(n int64) BoltOption {
	return func(c *boltConfig) { c.maxBytes = n }
}

// WithBoltLockTimeout sets how long OpenBoltStore waits for a file held by
// someone else before failing with ErrStoreLocked. d <= 0 means a single
// attempt. The default is one second.
func WithBoltLockTimeout(d time.Duration) BoltOption {
	return func(c *boltConfig) { c.lockTimeout = d }
}

// WithBoltCache sets how many bytes of recently used entries the store keeps
// decoded in memory, so that serving one again needs neither a read of the
// file nor a copy of its body. The cache is kept up to date by every write
// and never disagrees with the file. n <= 0 turns it off. The default is
// 64 MiB.
func WithBoltCache(n int64) BoltOption {
	return func(c *boltConfig) { c.cache = n }
}

// BoltStore is a Store and HeaderUpdater that keeps entries in a bbolt
// database file. The metadata and the body of an entry are separate records
// written in one transaction: UpdateHeader rewrites only the metadata, and a
// crash never leaves a torn entry. A Get writes nothing: the recency behind
// the LRU size bound is kept in memory and written to the file by Put,
// UpdateHeader and Close. A record that fails to decode is removed and
// reported as a miss. Only one BoltStore, in any process, can have a file
// open at a time. A BoltStore is safe for concurrent use.
type BoltStore struct {
	db       *bolt.DB
	path     string
	maxBytes int64

	closeMu sync.RWMutex // shared by every method, exclusive in Close
	closed  bool
	wmu     sync.Mutex // serialises write transactions with index changes

	mu    sync.Mutex // guards the index below
	size  int64
	lru   *list.List // of *boltItem, most recently used at the front
	items map[string]*list.Element

	writeTxs atomic.Int64 // committed write transactions

	cache *entryCache
}

// boltItem is the index entry of one stored entry.
type boltItem struct {
	rk           string // record key
	size         int64
	used, stored int64 // last use, in memory and as recorded in the file (Unix ns)

	// What a write stored, for the entry cache: the entry, or with
	// headerOnly its new metadata.
	entry      *Entry
	headerOnly bool
}

var (
	_ Store         = (*BoltStore)(nil)
	_ HeaderUpdater = (*BoltStore)(nil)
)

// OpenBoltStore opens the store file at path, creating it (mode 0600) and
// any missing parent directories (mode 0700). An existing file is checked
// read-only first: if it is not an etagcache store of a known schema
// version, the error wraps ErrIncompatibleFile and names the path, and the
// file is not modified. An empty file or empty bbolt database is made into a
// store. If the file stays held by another opener for the lock timeout, the
// error wraps ErrStoreLocked. Records found inconsistent are removed.
func OpenBoltStore(path string, opts ...BoltOption) (*BoltStore, error) {
	cfg := boltConfig{maxBytes: defaultBoltMaxBytes, lockTimeout: defaultBoltLockTimeout, cache: defaultBoltCache}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxBytes <= 0 {
		cfg.maxBytes = 1<<63 - 1
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("etagcache: open %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		db, err := openBolt(path, cfg.lockTimeout, true)
		if err != nil {
			return nil, err
		}
		err = db.View(func(tx *bolt.Tx) error { _, err := checkBoltSchema(tx, path); return err })
		if err = errors.Join(err, db.Close()); err != nil {
			return nil, err
		}
	}
	db, err := openBolt(path, cfg.lockTimeout, false)
	if err != nil {
		return nil, err
	}
	s := &BoltStore{db: db, path: path, maxBytes: cfg.maxBytes, lru: list.New(), items: make(map[string]*list.Element),
		cache: newEntryCache(cfg.cache)}
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func openBolt(path string, timeout time.Duration, readOnly bool) (*bolt.DB, error) {
	t := max(timeout, time.Nanosecond) // bbolt waits forever on 0; 1ns is one attempt
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: t, ReadOnly: readOnly, FreelistType: bolt.FreelistMapType})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s is held by another process or handle (waited %v)", ErrStoreLocked, path, max(timeout, 0))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("%w: %s is not a bbolt database (%v); left untouched", ErrIncompatibleFile, path, err)
	}
	return nil, fmt.Errorf("etagcache: open %s: %w", path, err)
}

// Get implements Store. An entry in the memory cache (WithBoltCache) is
// served from there; otherwise it is copied out of the file, body included,
// and cached. Get writes nothing to the file unless it finds a record to
// remove.
func (s *BoltStore) Get(ctx context.Context, key, variant string) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rk := boltRecordKey(key, variant)
	var e *Entry
	var corrupt error
	s.closeMu.RLock()
	err := ErrStoreClosed
	if !s.closed {
		var seq uint64
		if e, seq = s.cache.get(rk); e == nil {
			err = s.db.View(func(tx *bolt.Tx) error {
				mv, mok := boltGet(tx.Bucket(boltMetaBucket), rk)
				body, bok := boltGet(tx.Bucket(boltBodyBucket), rk)
				if !mok && !bok {
					return ErrNotFound
				}
				// Values are only valid inside the transaction, and decoded
				// fields may alias their input: decode a copy.
				if e, corrupt = parseBoltRecord(bytes.Clone(mv), mok, body, bok); corrupt == nil && len(body) > 0 {
					e.Body = bytes.Clone(body)
				}
				return nil
			})
			if err == nil && corrupt == nil {
				s.cache.fill(string(rk), e, seq)
			}
		} else {
			err = nil
		}
	}
	s.closeMu.RUnlock()
	if err != nil {
		return nil, err
	}
	if corrupt != nil {
		return nil, s.write(ctx, func(tx *bolt.Tx) (*boltItem, []string, error) {
			_, _, removed, err := checkBoltRecord(tx, rk)
			return nil, removed, cmp.Or(err, ErrNotFound) // replaced meanwhile: still a miss
		})
	}
	s.mu.Lock()
	if el, ok := s.items[string(rk)]; ok {
		el.Value.(*boltItem).used = time.Now().UnixNano()
		s.lru.MoveToFront(el)
	}
	s.mu.Unlock()
	return e, nil
}

// Put implements Store. Metadata and body are written in one transaction,
// which also removes least recently used entries if the size bound needs it.
func (s *BoltStore) Put(ctx context.Context, key, variant string, e *Entry) error {
	rk := boltRecordKey(key, variant)
	now := time.Now().UnixNano()
	mv := appendBoltMeta(now, len(e.Body), EncodeEntryMeta(e))
	it := &boltItem{rk: string(rk), size: boltSize(rk, mv, e.Body), used: now, stored: now, entry: e}
	err := s.write(ctx, func(tx *bolt.Tx) (*boltItem, []string, error) {
		if it.size > s.maxBytes {
			return nil, []string{it.rk}, deleteBoltRecord(tx, rk)
		}
		if err := tx.Bucket(boltMetaBucket).Put(rk, mv); err != nil {
			return nil, nil, err
		}
		return it, nil, tx.Bucket(boltBodyBucket).Put(rk, e.Body)
	})
	return err
}

// UpdateHeader implements HeaderUpdater: only the metadata record is
// rewritten; the body record is not touched. An entry replaced meanwhile by
// one with other validators is left alone, and one that fails to decode is
// removed; both are reported as ErrNotFound.
func (s *BoltStore) UpdateHeader(ctx context.Context, key, variant string, e *Entry) error {
	rk := boltRecordKey(key, variant)
	now := time.Now().UnixNano()
	meta := EncodeEntryMeta(e)
	return s.write(ctx, func(tx *bolt.Tx) (*boltItem, []string, error) {
		prev, body, removed, err := checkBoltRecord(tx, rk)
		if err != nil {
			return nil, removed, err
		}
		if !prev.SameValidators(e) {
			return nil, nil, ErrNotFound // another representation was stored meanwhile
		}
		mv := appendBoltMeta(now, len(body), meta)
		it := &boltItem{rk: string(rk), size: boltSize(rk, mv, body), used: now, stored: now, entry: e, headerOnly: true}
		if it.size > s.maxBytes {
			return nil, []string{it.rk}, deleteBoltRecord(tx, rk)
		}
		return it, nil, tx.Bucket(boltMetaBucket).Put(rk, mv)
	})
}

// Delete implements Store: every variant stored under key is removed.
func (s *BoltStore) Delete(ctx context.Context, key string) error {
	prefix := boltKeyPrefix(key)
	err := s.write(ctx, func(tx *bolt.Tx) (*boltItem, []string, error) {
		var removed []string
		for _, name := range [][]byte{boltMetaBucket, boltBodyBucket} {
			c := tx.Bucket(name).Cursor()
			for k, _ := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				removed = append(removed, string(k))
			}
		}
		for _, k := range removed {
			if err := deleteBoltRecord(tx, []byte(k)); err != nil {
				return nil, nil, err
			}
		}
		if len(removed) == 0 {
			return nil, nil, ErrNotFound
		}
		return nil, removed, nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Len reports the number of entries held.
func (s *BoltStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Size reports the bytes accounted to the entries held (see WithBoltMaxBytes).
func (s *BoltStore) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// Close records the last use of entries read since they were written, so
// the LRU order survives a restart, and closes the file. It waits for calls
// in progress. Calling it again does nothing and returns nil.
func (s *BoltStore) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var used []*boltItem
	s.mu.Lock()
	for el := s.lru.Front(); el != nil; el = el.Next() {
		if it := el.Value.(*boltItem); it.used > it.stored {
			used = append(used, it)
		}
	}
	s.mu.Unlock()
	var err error
	if len(used) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			mb := tx.Bucket(boltMetaBucket)
			for _, it := range used {
				if v, ok := boltGet(mb, []byte(it.rk)); ok && len(v) >= boltMetaPrefix {
					nv := binary.BigEndian.AppendUint64(make([]byte, 0, len(v)), uint64(it.used))
					if err := mb.Put([]byte(it.rk), append(nv, v[8:]...)); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err2 := s.db.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return fmt.Errorf("etagcache: close %s: %w", s.path, err)
	}
	return nil
}

// write runs fn in a write transaction. fn returns the entry it stored, if
// any, and the record keys it removed; least recently used entries are
// evicted in the same transaction to make room for the stored entry, and
// after the commit the index is brought up to date. If fn fails, nothing is
// written; if it fails with ErrNotFound after removing records, they stay
// removed and write returns ErrNotFound.
func (s *BoltStore) write(ctx context.Context, fn func(*bolt.Tx) (*boltItem, []string, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrStoreClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	var set *boltItem
	var removed []string
	var result error
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		set, removed, err = fn(tx)
		if errors.Is(err, ErrNotFound) && len(removed) > 0 {
			result, err = ErrNotFound, nil
		}
		if err != nil || set == nil {
			return err
		}
		victims, err := s.evict(tx, set)
		removed = append(removed, victims...)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return err
	} else if err != nil {
		return fmt.Errorf("etagcache: bolt store write: %w", err)
	}
	s.writeTxs.Add(1)
	s.cache.committed(removed, set)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rk := range removed {
		if el, ok := s.items[rk]; ok {
			s.size -= el.Value.(*boltItem).size
			s.lru.Remove(el)
			delete(s.items, rk)
		}
	}
	if set != nil && set.rk != "" {
		if el, ok := s.items[set.rk]; ok {
			s.size -= el.Value.(*boltItem).size
			s.lru.Remove(el)
		}
		s.items[set.rk] = s.lru.PushFront(set)
		s.size += set.size
	}
	return result
}

// evict removes, in tx, least recently used entries other than it until it
// fits the size bound, and returns their record keys.
func (s *BoltStore) evict(tx *bolt.Tx, it *boltItem) ([]string, error) {
	s.mu.Lock()
	total := s.size + it.size
	if el, ok := s.items[it.rk]; ok {
		total -= el.Value.(*boltItem).size
	}
	var victims []string
	for el := s.lru.Back(); el != nil && total > s.maxBytes; el = el.Prev() {
		if v := el.Value.(*boltItem); v.rk != it.rk {
			victims = append(victims, v.rk)
			total -= v.size
		}
	}
	s.mu.Unlock()
	for _, rk := range victims {
		if err := deleteBoltRecord(tx, []byte(rk)); err != nil {
			return nil, err
		}
	}
	return victims, nil
}
