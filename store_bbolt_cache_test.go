package etagcache

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Entries are served from memory after a write or a first read, never one
// that was replaced since, even by a body of the same length.
func TestBoltCacheServesOnlyTheCurrentEntry(t *testing.T) {
	ctx := context.Background()
	s, path := openTestBolt(t)
	first := bytes.Repeat([]byte("a"), 1<<20)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(first)))

	e1, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &first[0], &e1.Body[0], "a Get after Put copied the body out of the file")

	// A header update keeps the body, and the cached copy with it.
	require.NoError(t, s.UpdateHeader(ctx, "k", "", &Entry{Status: 200, Header: http.Header{"X-Body-Sha256": e1.Header["X-Body-Sha256"], "Etag": {`"v1"`}, "X-New": {"1"}}, Body: e1.Body}))
	e2, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &first[0], &e2.Body[0])
	assert.Equal(t, "1", e2.Header.Get("X-New"))
	assert.Empty(t, e1.Header.Get("X-New"), "an entry handed out earlier changed")
	requireWhole(t, e2)

	second := bytes.Repeat([]byte("b"), 1<<20)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(second)))
	e3, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	requireWhole(t, e3)
	assert.Equal(t, second, e3.Body)
	assert.Equal(t, first, e1.Body, "an entry handed out earlier changed")

	require.NoError(t, s.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k", "")
	require.ErrorIs(t, err, ErrNotFound)
	size, _ := s.cache.stats()
	assert.Zero(t, size, "a deleted entry stayed in memory")

	// After a restart the first Get reads the file, the next ones memory.
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(second)))
	require.NoError(t, s.Close())
	s2, err := OpenBoltStore(path)
	require.NoError(t, err)
	defer s2.Close()
	r1, err := s2.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.NotSame(t, &second[0], &r1.Body[0])
	requireWhole(t, r1)
	r2, err := s2.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &r1.Body[0], &r2.Body[0], "the second Get copied the body again")
}

func TestBoltCacheBoundAndOff(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t, WithBoltCache(4<<10))
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		require.NoError(t, s.Put(ctx, k, "", boltTestEntry(bytes.Repeat([]byte(k), 1<<10))))
		_, err := s.Get(ctx, k, "")
		require.NoError(t, err)
	}
	size, n := s.cache.stats()
	assert.LessOrEqual(t, size, int64(4<<10))
	assert.Less(t, n, 5)

	off, _ := openTestBolt(t, WithBoltCache(-1))
	require.NoError(t, off.Put(ctx, "k", "", boltTestEntry([]byte("body"))))
	boltFlush(t, off) // until written, Get serves the entry Put was given
	e1, err := off.Get(ctx, "k", "")
	require.NoError(t, err)
	e2, err := off.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.NotSame(t, &e1.Body[0], &e2.Body[0])
	requireWhole(t, e2)
}
