package etagcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Small bodies live inside their meta record (schema version 3); larger
// ones in chunks. Both round-trip through a reopened store, and the file
// holds exactly the records each kind calls for.
func TestBoltStoreInlineBodies(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := OpenBoltStore(path, WithBoltCache(-1))
	require.NoError(t, err)
	bodies := map[string][]byte{
		"empty":  nil,
		"small":  []byte("hello"),
		"edge":   bytes.Repeat([]byte("e"), boltInlineMax),
		"chunks": bytes.Repeat([]byte("c"), boltInlineMax+1),
	}
	for k, b := range bodies {
		require.NoError(t, s.Put(ctx, k, "", boltTestEntry(b)))
	}
	require.NoError(t, s.Close())

	boltView(t, path, func(tx *bolt.Tx) error {
		v := tx.Bucket(boltSchemaBucket).Get(boltVersionKey)
		assert.Equal(t, uint64(boltSchemaVersion), binary.BigEndian.Uint64(v))
		for k, b := range bodies {
			rk := boltRecordKey(k, "")
			mv, ok := boltGet(tx.Bucket(boltMetaBucket), rk)
			require.True(t, ok, k)
			m, err := parseBoltMetaRecord(mv)
			require.NoError(t, err, k)
			bk, _ := tx.Bucket(boltBodyBucket).Cursor().Seek(rk)
			hasChunks := bytes.HasPrefix(bk, rk)
			if len(b) <= boltInlineMax {
				assert.Zero(t, m.bodyID, "%s: not inline", k)
				assert.Equal(t, len(b), len(m.body), k)
				assert.False(t, hasChunks, "%s: inline body with a chunk bucket", k)
			} else {
				assert.NotZero(t, m.bodyID, k)
				assert.True(t, hasChunks, "%s: no chunks", k)
			}
		}
		return nil
	})

	s, err = OpenBoltStore(path, WithBoltCache(-1))
	require.NoError(t, err)
	defer s.Close()
	for k, b := range bodies {
		e, err := s.Get(ctx, k, "")
		require.NoError(t, err, k)
		assert.Equal(t, len(b), len(e.Body), k)
		assert.True(t, bytes.Equal(b, e.Body), k)
		requireWhole(t, e)
	}

	// A header update keeps the inline body, and a body that grows past
	// the inline bound replaces it with chunks, and back.
	up := boltTestEntry(bodies["small"], "X-New", "1")
	require.NoError(t, s.UpdateHeader(ctx, "small", "", up))
	e, err := s.Get(ctx, "small", "")
	require.NoError(t, err)
	assert.Equal(t, "1", e.Header.Get("X-New"))
	assert.Equal(t, "hello", string(e.Body))
	require.NoError(t, s.Put(ctx, "small", "", boltTestEntry(bodies["chunks"])))
	require.NoError(t, s.Put(ctx, "chunks", "", boltTestEntry([]byte("now small"))))
	require.NoError(t, s.Close())
	boltView(t, path, func(tx *bolt.Tx) error {
		for _, k := range []string{"small", "chunks"} {
			e, m, err := readBoltEntry(tx, boltRecordKey(k, ""), uint64(tx.Size()))
			require.NoError(t, err, k)
			requireWhole(t, e)
			rk := boltRecordKey(k, "")
			n := 0
			c := tx.Bucket(boltBodyBucket).Cursor()
			for bk, _ := c.Seek(rk); bytes.HasPrefix(bk, rk); bk, _ = c.Next() {
				n++
			}
			if m.bodyID == 0 {
				assert.Zero(t, n, "%s: chunks of the old body left", k)
			} else {
				assert.Equal(t, 1, n, "%s: one chunk bucket", k)
			}
		}
		return nil
	})
}

// Every byte of an inline record is covered: a flip anywhere in it, in
// the body, its length, or the id that says it is inline, is a miss,
// never a wrong body.
func TestBoltStoreInlineRecordFlips(t *testing.T) {
	ctx := context.Background()
	body := []byte("a small body, kept inline")
	e := boltTestEntry(body)
	m := boltMetaRecord{used: 1, bodyLen: uint64(len(body)), meta: EncodeEntryMeta(e), body: body}
	m.bodyCRC = crc32.Checksum(body, castagnoli)
	good := m.bytes()
	// storeWith opens a store whose only record, for "k", is rec.
	storeWith := func(rec []byte) *BoltStore {
		path := filepath.Join(t.TempDir(), "cache.db")
		s, err := OpenBoltStore(path)
		require.NoError(t, err)
		require.NoError(t, s.Close())
		writeBoltFile(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket(boltMetaBucket).Put(boltRecordKey("k", ""), rec)
		})
		s, err = OpenBoltStore(path)
		require.NoError(t, err)
		return s
	}
	for i := range good {
		rec := bytes.Clone(good)
		rec[i] ^= 0x10
		s := storeWith(rec)
		got, err := s.Get(ctx, "k", "")
		if err == nil {
			t.Errorf("byte %d flipped: served a body %q", i, got.Body)
		}
		require.NoError(t, s.Close())
	}

	// The record unflipped is served: the test can fail.
	s := storeWith(good)
	defer s.Close()
	got, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, body, got.Body)
}

// A file of schema version 2 (no inline bodies) is used as it is, its
// entries served, and marked version 3 by the first inline write.
func TestBoltStoreOpensVersion2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := OpenBoltStore(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	big := bytes.Repeat([]byte("b"), 5000)
	old := rawBoltRecord(boltTestEntry(big), big)
	putRaw(t, path, "old", "", old.bytes(), big)
	setVersion := func(tx *bolt.Tx) error {
		return tx.Bucket(boltSchemaBucket).Put(boltVersionKey, binary.BigEndian.AppendUint64(nil, 2))
	}
	writeBoltFile(t, path, setVersion)

	s, err = OpenBoltStore(path)
	require.NoError(t, err)
	e, err := s.Get(ctx, "old", "")
	require.NoError(t, err)
	assert.Equal(t, big, e.Body)
	require.NoError(t, s.Put(ctx, "new", "", boltTestEntry([]byte("tiny"))))
	require.NoError(t, s.Close())
	boltView(t, path, func(tx *bolt.Tx) error {
		v := tx.Bucket(boltSchemaBucket).Get(boltVersionKey)
		assert.Equal(t, uint64(3), binary.BigEndian.Uint64(v))
		return nil
	})
}
