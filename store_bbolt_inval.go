package etagcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Invalidations in a BoltStore file (see Invalidator): a bucket of
// tombstones, each the key prefix of a record key (SHA-256 of the key and
// 0x00, 33 bytes) → the latest time the key was invalidated at, and a
// floor record, the latest such time forgotten. Every process checks a
// Put against them in the write transaction that applies it, so one
// process's invalidation wins over another's older write; the index of
// each process keeps a copy, current with it, to check Puts before they
// are queued.
var (
	boltInvalBucket = []byte("inval")
	boltFloorKey    = []byte("floor")
)

const (
	boltKeyPrefixLen = sha256.Size + 1
	// boltMaxTombstones bounds the keys whose invalidation the file
	// remembers: past it, the oldest is forgotten and the floor raised.
	boltMaxTombstones = 4096
)

var _ Invalidator = (*BoltStore)(nil)

// Invalidate implements Invalidator: every variant of key is removed, with
// the Puts of key this process has queued, and a Put under key of an entry
// requested before at is dropped from then on, by every process using the
// file: the check runs in the write transaction that applies it (write-
// behind batches included). The file remembers the invalidations of up to
// 4096 keys (outside the size bound: about 60 bytes each, and a copy of
// about 100 in each process's memory); past that it forgets the oldest and
// drops every Put requested before the latest one it forgot. Invalidate is
// synchronous.
func (s *BoltStore) Invalidate(ctx context.Context, key string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrStoreClosed
	}
	prefix := boltKeyPrefix(key)
	s.mu.Lock()
	for rk, p := range s.pending {
		if len(rk) > len(prefix) && rk[:len(prefix)] == string(prefix) {
			delete(s.pending, rk)
			s.pendSize -= int64(len(p.e.Body))
		}
	}
	s.mu.Unlock()
	err := s.commit(ctx, func(w *boltWrite) error { return w.invalidate(prefix, invalidationNano(at)) })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// invalidate removes the entries under a key prefix and records its
// tombstone.
func (w *boltWrite) invalidate(prefix []byte, at int64) error {
	if err := w.deletePrefix(prefix); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	s := w.s
	s.mu.Lock()
	old, ok := s.idx.tombs[string(prefix)]
	s.mu.Unlock()
	if ok && old >= at {
		return nil
	}
	b, err := w.tx.CreateBucketIfNotExists(boltInvalBucket)
	if err != nil {
		return err
	}
	if err := b.Put(prefix, boltNano(at)); err != nil {
		return err
	}
	w.changed = true
	s.mu.Lock()
	if s.idx.tombs == nil {
		s.idx.tombs = make(map[string]int64)
	}
	s.idx.tombs[string(prefix)] = at
	var oldest string
	if len(s.idx.tombs) > boltMaxTombstones {
		first := int64(math.MaxInt64)
		for k, t := range s.idx.tombs {
			if t < first {
				oldest, first = k, t
			}
		}
		delete(s.idx.tombs, oldest)
		s.idx.floor = max(s.idx.floor, first)
	}
	floor := s.idx.floor
	s.mu.Unlock()
	if oldest == "" {
		return nil
	}
	if err := b.Delete([]byte(oldest)); err != nil {
		return err
	}
	return b.Put(boltFloorKey, boltNano(floor))
}

// refused reports whether the write transaction must drop a Put of e
// under rk: e was requested before an invalidation of its key.
func (w *boltWrite) refused(rk []byte, e *Entry) bool {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.idx.refuses(rk, e.RequestTime)
}

// refuses reports whether an entry requested at req may not be stored
// under record key rk. The caller holds the store's lock, and the index
// must be current.
func (x *boltIndex) refuses(rk []byte, req time.Time) bool {
	if len(x.tombs) == 0 && x.floor == math.MinInt64 {
		return false
	}
	r := requestNano(req)
	if r < x.floor {
		return true
	}
	at, ok := x.tombs[string(rk[:boltKeyPrefixLen])]
	return ok && r < at
}

// loadBoltTombs reads the tombstones and the floor of the file. Records of
// another shape are skipped.
func loadBoltTombs(tx *bolt.Tx) (map[string]int64, int64) {
	floor := int64(math.MinInt64)
	b := tx.Bucket(boltInvalBucket)
	if b == nil {
		return nil, floor
	}
	tombs := make(map[string]int64)
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(v) != 8 {
			continue
		}
		t := int64(binary.BigEndian.Uint64(v))
		switch {
		case len(k) == boltKeyPrefixLen:
			tombs[string(k)] = t
		case bytes.Equal(k, boltFloorKey):
			floor = t
		}
	}
	return tombs, floor
}

func boltNano(t int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(t)) }
