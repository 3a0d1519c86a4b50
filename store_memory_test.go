package etagcache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func bodyEntry(n int, tag string) *Entry {
	b := make([]byte, n)
	for i := range b {
		b[i] = tag[i%len(tag)]
	}
	return &Entry{Status: 200, Header: http.Header{"Etag": {`"` + tag + `"`}}, Body: b}
}

func TestMemoryStoreBasics(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(0)
	_, err := s.Get(ctx, "k", "")
	require.ErrorIs(t, err, ErrNotFound)

	e := bodyEntry(100, "a")
	require.NoError(t, s.Put(ctx, "k", "", e))
	require.NoError(t, s.Put(ctx, "k", "v2", bodyEntry(10, "b")))
	require.NoError(t, s.Put(ctx, "other", "", bodyEntry(10, "c")))
	got, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Same(t, &e.Body[0], &got.Body[0], "a hit copied the body")

	// UpdateHeader keeps the body and leaves entries already handed out alone.
	require.NoError(t, s.UpdateHeader(ctx, "k", "", &Entry{Status: 200, Header: http.Header{"Etag": {`W/"a"`}, "X-New": {"1"}}, Body: got.Body}))
	upd, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, `W/"a"`, upd.Header.Get("Etag"))
	assert.Same(t, &e.Body[0], &upd.Body[0])
	assert.Empty(t, got.Header.Get("X-New"), "an entry returned earlier was modified")
	// The header of another representation never lands on this body.
	require.ErrorIs(t, s.UpdateHeader(ctx, "k", "", &Entry{Status: 200, Header: http.Header{"Etag": {`"b"`}}, Body: got.Body}), ErrNotFound)
	upd, err = s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, `W/"a"`, upd.Header.Get("Etag"))
	require.ErrorIs(t, s.UpdateHeader(ctx, "nope", "", &Entry{Status: 200}), ErrNotFound)

	require.NoError(t, s.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k", "v2")
	require.ErrorIs(t, err, ErrNotFound, "Delete left a variant")
	_, err = s.Get(ctx, "other", "")
	require.NoError(t, err)
	assert.Equal(t, 1, s.Len())
	require.NoError(t, s.Delete(ctx, "never-there"))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Get(cctx, "other", "")
	require.ErrorIs(t, err, context.Canceled)
}

func TestMemoryStoreEvictsLeastRecentlyUsedByBytes(t *testing.T) {
	ctx := context.Background()
	one := entrySize("k0", "", bodyEntry(1000, "x"))
	s := NewMemoryStore(3 * one)
	for i := 0; i < 3; i++ {
		require.NoError(t, s.Put(ctx, fmt.Sprintf("k%d", i), "", bodyEntry(1000, "x")))
	}
	_, err := s.Get(ctx, "k0", "") // k0 is now the most recently used
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "k3", "", bodyEntry(1000, "x")))
	_, err = s.Get(ctx, "k1", "")
	require.ErrorIs(t, err, ErrNotFound, "the least recently used entry survived")
	for _, k := range []string{"k0", "k2", "k3"} {
		_, err = s.Get(ctx, k, "")
		require.NoError(t, err, k)
	}
	assert.LessOrEqual(t, s.Size(), 3*one)

	// An entry larger than the whole store is not kept and evicts nothing.
	require.NoError(t, s.Put(ctx, "huge", "", bodyEntry(int(4*one), "h")))
	_, err = s.Get(ctx, "huge", "")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, 3, s.Len())
}

func TestMemoryStoreConcurrentUse(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(20 << 10)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				key := fmt.Sprintf("k%d", i%13)
				tag := fmt.Sprintf("t%d", (g+i)%5)
				switch i % 4 {
				case 0:
					assert.NoError(t, s.Put(ctx, key, "", bodyEntry(500+i%7, tag)))
				case 1:
					if e, err := s.Get(ctx, key, ""); err == nil {
						_ = s.UpdateHeader(ctx, key, "", &Entry{Status: 200, Header: http.Header{"Etag": {`"` + tag + `"`}}, Body: e.Body})
					}
				case 2:
					if e, err := s.Get(ctx, key, ""); err == nil {
						// Every body is whole: its tag repeated.
						want := bodyEntry(len(e.Body), string(e.Body[:2])).Body
						if !bytes.Equal(want, e.Body) {
							t.Errorf("torn body for %s", key)
							return
						}
					}
				default:
					assert.NoError(t, s.Delete(ctx, key))
				}
			}
		}(g)
	}
	wg.Wait()
	assert.LessOrEqual(t, s.Size(), int64(20<<10))
}

// BenchmarkMemoryStoreRevalidate1MiB measures UpdateHeader on a 1 MiB entry,
// naming the body as Get returned it (the transport's case: recognised by
// identity, no byte read) and as a copy (compared byte by byte).
func BenchmarkMemoryStoreRevalidate1MiB(b *testing.B) {
	ctx := context.Background()
	for _, name := range []string{"as-returned", "copy"} {
		b.Run(name, func(b *testing.B) {
			s := NewMemoryStore(0)
			require.NoError(b, s.Put(ctx, "k", "", bodyEntry(1<<20, "a")))
			got, err := s.Get(ctx, "k", "")
			require.NoError(b, err)
			u := *got
			u.Header = http.Header{"Etag": {`"a"`}, "X-Rev": {"1"}}
			if name == "copy" {
				u.Body = bytes.Clone(got.Body)
			}
			for b.Loop() {
				if err := s.UpdateHeader(ctx, "k", "", &u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
