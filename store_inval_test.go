package etagcache

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

var tombAt = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// requestedEntry is boltTestEntry requested at at.
func requestedEntry(body string, at time.Time) *Entry {
	e := boltTestEntry([]byte(body))
	e.RequestTime, e.ResponseTime = at, at.Add(time.Millisecond)
	return e
}

// Past its bound, a MemoryStore forgets its oldest invalidations and drops
// every Put requested before the latest one forgotten, under any key; the
// rest hold as before. Tombstones are not entries, and outlive Clear.
func TestMemoryStoreTombstoneFloor(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(1) // the smallest bound: minTombstones
	require.Equal(t, minTombstones, s.tombs.limit)
	assert.Equal(t, maxTombstones, NewMemoryStore(0).tombs.limit)
	assert.Equal(t, maxTombstones, NewMemoryStore(-1).tombs.limit)
	s = NewMemoryStore(256 << 10)
	require.Equal(t, 64, s.tombs.limit)

	for i := range s.tombs.limit {
		require.NoError(t, s.Invalidate(ctx, fmt.Sprint("k", i), tombAt.Add(time.Duration(i)*time.Second)))
	}
	assert.Zero(t, s.Len())
	assert.Equal(t, int64(math.MinInt64), s.tombs.floor, "nothing forgotten yet")
	require.NoError(t, s.Put(ctx, "never invalidated", "", requestedEntry("old", tombAt.Add(-time.Hour))))
	assert.Equal(t, 1, s.Len())

	// One more: k0 is forgotten, and the floor is its time.
	require.NoError(t, s.Invalidate(ctx, "one more", tombAt.Add(time.Hour)))
	assert.Len(t, s.tombs.at, s.tombs.limit)
	assert.Equal(t, tombAt.UnixNano(), s.tombs.floor)
	for _, key := range []string{"k0", "never invalidated", "another"} {
		require.NoError(t, s.Put(ctx, key, "v", requestedEntry("old", tombAt.Add(-time.Nanosecond))))
		_, err := s.Get(ctx, key, "v")
		require.ErrorIs(t, err, ErrNotFound, "%s: a Put requested before the floor", key)
		require.NoError(t, s.Put(ctx, key, "v", requestedEntry("at the floor", tombAt)))
		_, err = s.Get(ctx, key, "v")
		require.NoError(t, err, "%s: a Put requested at the floor", key)
	}
	// The invalidations remembered still hold.
	require.NoError(t, s.Put(ctx, "k10", "", requestedEntry("old", tombAt.Add(9*time.Second))))
	_, err := s.Get(ctx, "k10", "")
	require.ErrorIs(t, err, ErrNotFound)

	s.Clear()
	require.NoError(t, s.Put(ctx, "k10", "", requestedEntry("old", tombAt.Add(9*time.Second))))
	assert.Zero(t, s.Len(), "Clear forgot an invalidation")

	// Invalidating one key again and again forgets the others sooner, never
	// that one.
	for i := range 2 * s.tombs.limit {
		require.NoError(t, s.Invalidate(ctx, "hot", tombAt.Add(2*time.Hour+time.Duration(i)*time.Second)))
	}
	assert.Len(t, s.tombs.at, 1)
	assert.LessOrEqual(t, len(s.tombs.order), s.tombs.limit)
	require.NoError(t, s.Put(ctx, "hot", "", requestedEntry("old", tombAt.Add(2*time.Hour+100*time.Second))))
	_, err = s.Get(ctx, "hot", "")
	require.ErrorIs(t, err, ErrNotFound)
}

// A BoltStore's invalidations are in its file: another handle (another
// process) and a later open honour them, the floor included.
func TestBoltStoreTombstonesPersist(t *testing.T) {
	ctx := context.Background()
	s, path := openTestBolt(t)
	require.NoError(t, s.Invalidate(ctx, "first", tombAt))
	for i := range boltMaxTombstones {
		require.NoError(t, s.Invalidate(ctx, fmt.Sprint("k", i), tombAt.Add(time.Duration(i+1)*time.Millisecond)))
	}
	require.NoError(t, s.Close())

	s2, err := OpenBoltStore(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	s2.mu.Lock()
	n, floor := len(s2.idx.tombs), s2.idx.floor
	s2.mu.Unlock()
	assert.Equal(t, boltMaxTombstones, n)
	assert.Equal(t, tombAt.UnixNano(), floor, "the forgotten invalidation is the floor")
	inTx(t, s2, func(tx *bolt.Tx) {
		assert.Equal(t, boltMaxTombstones+1, tx.Bucket(boltInvalBucket).Stats().KeyN, "tombstones and the floor")
	})

	for key, at := range map[string]time.Time{
		"first": tombAt.Add(-time.Nanosecond), "never invalidated": tombAt.Add(-time.Nanosecond),
		"k100": tombAt.Add(100 * time.Millisecond),
	} {
		require.NoError(t, s2.Put(ctx, key, "", requestedEntry("old", at)))
		require.NoError(t, s2.commit(ctx, nil))
		_, err := s2.Get(ctx, key, "")
		require.ErrorIs(t, err, ErrNotFound, key)
	}
	require.NoError(t, s2.Put(ctx, "k100", "", requestedEntry("new", tombAt.Add(time.Hour))))
	_, err = s2.Get(ctx, "k100", "")
	require.NoError(t, err)
}

// A body too large to queue is written in several transactions: one whose
// key another process invalidated meanwhile is dropped at its last one,
// chunks and all.
func TestBoltStoreLargePutInvalidatedByAnotherHandle(t *testing.T) {
	ctx := context.Background()
	a, path := openTestBolt(t)
	b, err := OpenBoltStore(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Invalidate(ctx, "big", tombAt))
	// a does not know of it until its next write: the Put's check at once
	// cannot refuse it, the write's must.
	e := requestedEntry("", tombAt.Add(-time.Second))
	e.Body = make([]byte, boltPendingMax+1)
	require.NoError(t, a.Put(ctx, "big", "", e))
	_, err = a.Get(ctx, "big", "")
	require.ErrorIs(t, err, ErrNotFound)
	inTx(t, a, func(tx *bolt.Tx) {
		assert.Zero(t, tx.Bucket(boltBodyBucket).Stats().KeyN, "chunks left behind")
		assert.Zero(t, tx.Bucket(boltMetaBucket).Stats().KeyN)
	})
}

// inTx runs f in a write transaction of s that changes nothing.
func inTx(t *testing.T, s *BoltStore, f func(tx *bolt.Tx)) {
	t.Helper()
	require.NoError(t, s.commit(context.Background(), func(w *boltWrite) error {
		f(w.tx)
		return nil
	}))
}
