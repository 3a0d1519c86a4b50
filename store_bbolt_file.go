package etagcache

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// The layout of a BoltStore file, schema version 1:
//
//	bucket "etagcache": "version" → uint64 big-endian (the schema marker)
//	bucket "meta":      record key → last use | body length | EncodeEntryMeta
//	bucket "body":      record key → body
//
// A record key is SHA-256(key) | 0x00 | SHA-256(variant), 65 bytes whatever
// the length of key and variant, so all variants of a key share a prefix.
// Last use is int64 Unix nanoseconds and body length uint64, big-endian.
// Any change to this layout must change boltSchemaVersion.
var (
	boltSchemaBucket = []byte("etagcache")
	boltVersionKey   = []byte("version")
	boltMetaBucket   = []byte("meta")
	boltBodyBucket   = []byte("body")
)

const (
	boltSchemaVersion = 1
	boltMetaPrefix    = 16
)

// checkBoltSchema reports whether the database is empty (and may be made a
// store), or an error if it is not a store of the known schema version.
func checkBoltSchema(tx *bolt.Tx, path string) (empty bool, err error) {
	sb := tx.Bucket(boltSchemaBucket)
	if sb == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return false, fmt.Errorf("%w: %s is a bbolt database of another program (no %q bucket); left untouched", ErrIncompatibleFile, path, boltSchemaBucket)
		}
		return true, nil
	}
	v := sb.Get(boltVersionKey)
	if len(v) != 8 {
		return false, fmt.Errorf("%w: %s has no readable schema version; left untouched", ErrIncompatibleFile, path)
	}
	if n := binary.BigEndian.Uint64(v); n != boltSchemaVersion {
		return false, fmt.Errorf("%w: %s has schema version %d, this etagcache supports version %d; left untouched", ErrIncompatibleFile, path, n, boltSchemaVersion)
	}
	return false, nil
}

func createBoltSchema(tx *bolt.Tx) error {
	sb, err := tx.CreateBucketIfNotExists(boltSchemaBucket)
	if err == nil && sb.Get(boltVersionKey) == nil {
		err = sb.Put(boltVersionKey, binary.BigEndian.AppendUint64(nil, boltSchemaVersion))
	}
	for _, name := range [][]byte{boltMetaBucket, boltBodyBucket} {
		if err == nil {
			_, err = tx.CreateBucketIfNotExists(name)
		}
	}
	return err
}

// load makes an empty database a store, builds the index from the meta
// records, and removes records that do not pair up and entries beyond the
// size bound. It writes nothing if there is nothing to change.
func (s *BoltStore) load() error {
	var items []*boltItem
	var bad [][]byte
	var create bool
	err := s.db.View(func(tx *bolt.Tx) error {
		empty, err := checkBoltSchema(tx, s.path)
		mb, bb := tx.Bucket(boltMetaBucket), tx.Bucket(boltBodyBucket)
		if create = empty || mb == nil || bb == nil; err != nil || create {
			return err
		}
		c := mb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			used, blen, ok := parseBoltMeta(v)
			if body, found := boltGet(bb, k); ok && found && uint64(len(body)) == blen {
				items = append(items, &boltItem{rk: string(k), size: boltSize(k, v, body), used: used, stored: used})
			} else {
				bad = append(bad, bytes.Clone(k))
			}
		}
		c = bb.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if _, found := boltGet(mb, k); !found {
				bad = append(bad, bytes.Clone(k))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(items, func(a, b *boltItem) int { return cmp.Compare(a.used, b.used) })
	for _, it := range items {
		s.items[it.rk] = s.lru.PushFront(it)
		s.size += it.size
	}
	if !create && len(bad) == 0 && s.size <= s.maxBytes {
		return nil
	}
	err = s.write(context.Background(), func(tx *bolt.Tx) (*boltItem, []string, error) {
		if err := createBoltSchema(tx); err != nil {
			return nil, nil, err
		}
		removed := make([]string, len(bad))
		for i, k := range bad {
			removed[i] = string(k)
			if err := deleteBoltRecord(tx, k); err != nil {
				return nil, nil, err
			}
		}
		return &boltItem{}, removed, nil // an empty item: evict down to the bound
	})
	if err != nil {
		return fmt.Errorf("etagcache: open %s: %w", s.path, err)
	}
	return nil
}

func boltKeyPrefix(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return append(h[:], 0)
}

func boltRecordKey(key, variant string) []byte {
	h := sha256.Sum256([]byte(variant))
	return append(boltKeyPrefix(key), h[:]...)
}

// boltSize is what an entry counts against the size bound.
func boltSize(rk, mv, body []byte) int64 { return int64(2*len(rk) + len(mv) + len(body)) }

// boltGet tells a missing key from an empty value, which Bucket.Get does not.
func boltGet(b *bolt.Bucket, k []byte) ([]byte, bool) {
	ck, v := b.Cursor().Seek(k)
	return v, bytes.Equal(ck, k)
}

func deleteBoltRecord(tx *bolt.Tx, rk []byte) error {
	if err := tx.Bucket(boltMetaBucket).Delete(rk); err != nil {
		return err
	}
	return tx.Bucket(boltBodyBucket).Delete(rk)
}

func appendBoltMeta(used int64, bodyLen int, meta []byte) []byte {
	b := make([]byte, 0, boltMetaPrefix+len(meta))
	b = binary.BigEndian.AppendUint64(b, uint64(used))
	b = binary.BigEndian.AppendUint64(b, uint64(bodyLen))
	return append(b, meta...)
}

func parseBoltMeta(v []byte) (used int64, bodyLen uint64, ok bool) {
	if len(v) < boltMetaPrefix {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), binary.BigEndian.Uint64(v[8:]), true
}

// parseBoltRecord decodes a meta record (mok: it exists) and checks it
// against its body record (bok: it exists). The entry has no body and may
// alias mv.
func parseBoltRecord(mv []byte, mok bool, body []byte, bok bool) (*Entry, error) {
	_, blen, ok := parseBoltMeta(mv)
	if !mok || !bok || !ok || blen != uint64(len(body)) {
		return nil, fmt.Errorf("%w: meta and body records do not match", ErrCorruptEntry)
	}
	e, err := DecodeEntry(mv[boltMetaPrefix:])
	if err == nil && len(e.Body) > 0 {
		err = fmt.Errorf("%w: body in meta record", ErrCorruptEntry)
	}
	return e, err
}

// checkBoltRecord returns the entry under rk (its metadata, aliasing tx
// memory) and its body if the records hold a whole entry. Otherwise it
// returns ErrNotFound, after removing them if there were any, with the key
// of what it removed.
func checkBoltRecord(tx *bolt.Tx, rk []byte) (e *Entry, body []byte, removed []string, err error) {
	mv, mok := boltGet(tx.Bucket(boltMetaBucket), rk)
	body, bok := boltGet(tx.Bucket(boltBodyBucket), rk)
	if !mok && !bok {
		return nil, nil, nil, ErrNotFound
	}
	if e, err := parseBoltRecord(mv, mok, body, bok); err == nil {
		return e, body, nil, nil
	}
	if err := deleteBoltRecord(tx, rk); err != nil {
		return nil, nil, nil, err
	}
	return nil, nil, []string{string(rk)}, ErrNotFound
}
