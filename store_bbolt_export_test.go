package etagcache

import (
	"bytes"
	"context"
	"fmt"
)

// DamageBoltRecord flips a bit of what the file holds for key and variant
// (of the body, when there is one), as a failing disk would, and empties
// the store's memory cache so that the next read goes to the file. For the
// conformance tests, which run in package etagcache_test.
func DamageBoltRecord(s *BoltStore, key, variant string) error {
	rk := boltRecordKey(key, variant)
	err := s.commit(context.Background(), func(w *boltWrite) error {
		mb := w.tx.Bucket(boltMetaBucket)
		mv, ok := boltGet(mb, rk)
		if !ok {
			return fmt.Errorf("no record of %q %q", key, variant)
		}
		m, err := parseBoltMetaRecord(mv)
		if err != nil {
			return err
		}
		w.changed = true
		if m.bodyID != 0 {
			sub := w.tx.Bucket(boltBodyBucket).Bucket(boltBodyKey(rk, m.bodyID))
			c := bytes.Clone(sub.Get(boltChunkKey(0)))
			c[len(c)/2] ^= 1
			return sub.Put(boltChunkKey(0), c)
		}
		v := bytes.Clone(mv)
		v[len(v)-1] ^= 1 // of the inline body, or of the metadata when there is none
		return mb.Put(rk, v)
	})
	s.cache.reset()
	return err
}

// FlushBolt writes the store's queued Puts now.
func FlushBolt(s *BoltStore) error { return s.commit(context.Background(), nil) }
