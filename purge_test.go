package etagcache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Purge removes every variant of one URL, for every user, and nothing else;
// the URL is normalised as lookups normalise it.
func TestPurgeRemovesEveryVariantOfOneURL(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, r.URL.Path+" as "+r.Header.Get("Accept"))
	})
	store := NewMemoryStore(0)
	tr := NewTransport(store)
	c := tr.Client()
	for _, kv := range [][]string{
		{"Accept", "text/plain"},
		{"Accept", "application/json"},
		{"Accept", "text/plain", "Authorization", "Bearer alice"},
		{"Accept", "text/plain", "Authorization", "Bearer bob"},
	} {
		fetch(t, c, o.URL+"/doc", kv...)
	}
	fetch(t, c, o.URL+"/doc?page=2")
	fetch(t, c, o.URL+"/other")
	require.Equal(t, 6, store.Len())

	// Upper-case scheme and host, the default port spelled out, a fragment
	// and user info: still the same resource.
	host := strings.TrimPrefix(o.URL, "http://")
	require.NoError(t, tr.Purge(context.Background(), "HTTP://user@"+strings.ToUpper(host)+"/doc#top"))
	assert.Equal(t, 2, store.Len(), "the query's and the other path's entries stay")

	before := len(o.requests())
	resp, body := fetch(t, c, o.URL+"/doc", "Accept", "text/plain")
	assert.Equal(t, "/doc as text/plain", body)
	assert.Equal(t, ResultMiss, ResultOf(resp))
	assert.Empty(t, o.requests()[before].Get("If-None-Match"), "a purged resource is fetched unconditionally")

	resp, _ = fetch(t, c, o.URL+"/doc?page=2")
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "another query is another resource")
}

// Purge uses the lookup's key: a default port spelled out or left out,
// an empty path or "/" name the same resource.
func TestPurgeKeyIsTheLookupKey(t *testing.T) {
	for _, tc := range []struct{ stored, purged string }{
		{"http://example.com/", "http://EXAMPLE.com:80"},
		{"https://example.com:443/a?b=1", "https://example.com/a?b=1#frag"},
		{"http://example.com:8080/x", "http://u:p@example.com:8080/x"},
	} {
		req, err := http.NewRequest(http.MethodGet, tc.stored, nil)
		require.NoError(t, err)
		store := NewMemoryStore(0)
		require.NoError(t, store.Put(context.Background(), requestKey(req), "", bodyEntry(10, "a")))
		require.NoError(t, NewTransport(store).Purge(context.Background(), tc.purged))
		assert.Equal(t, 0, store.Len(), "%s purged by %s", tc.stored, tc.purged)
	}
}

func TestPurgeErrors(t *testing.T) {
	ctx := context.Background()
	tr := NewTransport(NewMemoryStore(0))
	require.NoError(t, tr.Purge(ctx, "https://example.com/nothing-here"), "purging nothing is fine")
	for _, bad := range []string{"/relative?token=s3cret", "example.com/x", "http://[::1", ""} {
		err := tr.Purge(ctx, bad)
		require.Error(t, err, bad)
		assert.NotContains(t, err.Error(), "s3cret")
	}

	boom := errors.New("boom")
	spy := &spyStore{Store: NewMemoryStore(0), failDelete: boom}
	err := NewTransport(spy).Purge(ctx, "https://example.com/x?token=s3cret")
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "https://example.com/x?redacted")
	assert.NotContains(t, err.Error(), "s3cret")
	_, _, _, deletes := spy.counts()
	assert.Equal(t, 1, deletes)

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, NewTransport(NewMemoryStore(0)).Purge(ctx, "https://example.com/x"), context.Canceled)
}

func TestMemoryStoreClear(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore(1 << 20)
	require.NoError(t, s.Put(ctx, "k", "", bodyEntry(100, "a")))
	require.NoError(t, s.Put(ctx, "k", "v2", bodyEntry(10, "b")))
	require.NoError(t, s.Put(ctx, "other", "", bodyEntry(10, "c")))
	require.Equal(t, 3, s.Len())

	s.Clear()
	assert.Equal(t, 0, s.Len())
	assert.Equal(t, int64(0), s.Size())
	for _, kv := range [][2]string{{"k", ""}, {"k", "v2"}, {"other", ""}} {
		_, err := s.Get(ctx, kv[0], kv[1])
		assert.ErrorIs(t, err, ErrNotFound, kv)
	}

	// Still a working store, with its bound: fill it past the bound after
	// a Clear and the oldest go.
	for i := range 3 {
		require.NoError(t, s.Put(ctx, "big", string(rune('a'+i)), bodyEntry(400<<10, "x")))
	}
	assert.Equal(t, 2, s.Len())
	assert.LessOrEqual(t, s.Size(), int64(1<<20))
	_, err := s.Get(ctx, "big", "a")
	assert.ErrorIs(t, err, ErrNotFound)
}
