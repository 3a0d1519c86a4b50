package etagcache

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A body read once is served from memory afterwards, never a body that was
// replaced since, even one of the same length.
func TestBoltBodyCacheServesOnlyTheCurrentBody(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t)
	first := bytes.Repeat([]byte("a"), 1<<20)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(first)))

	e1, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	e2, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &e1.Body[0], &e2.Body[0], "the second Get copied the body again")

	// A header update keeps the body, and the cached copy with it.
	require.NoError(t, s.UpdateHeader(ctx, "k", "", &Entry{Status: 200, Header: http.Header{"X-Body-Sha256": e1.Header["X-Body-Sha256"], "Etag": {`"v1"`}}}))
	e3, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &e1.Body[0], &e3.Body[0])
	requireWhole(t, e3)

	second := bytes.Repeat([]byte("b"), 1<<20)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(second)))
	e4, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	requireWhole(t, e4)
	assert.Equal(t, second, e4.Body)
	assert.Equal(t, first, e1.Body, "an entry handed out earlier changed")

	require.NoError(t, s.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k", "")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Zero(t, s.bodies.size, "a deleted body stayed in memory")
}

func TestBoltBodyCacheBoundAndOff(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t, WithBoltBodyCache(3<<10))
	for _, k := range []string{"a", "b", "c", "d"} {
		require.NoError(t, s.Put(ctx, k, "", boltTestEntry(bytes.Repeat([]byte(k), 1<<10))))
		_, err := s.Get(ctx, k, "")
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, s.bodies.size, int64(3<<10))

	off, _ := openTestBolt(t, WithBoltBodyCache(0))
	require.NoError(t, off.Put(ctx, "k", "", boltTestEntry([]byte("body"))))
	e1, err := off.Get(ctx, "k", "")
	require.NoError(t, err)
	e2, err := off.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.NotSame(t, &e1.Body[0], &e2.Body[0])
}
