package httpcachestore_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
)

// origin serves one document with an ETag, answers a matching
// If-None-Match with 304, and records the conditions it was sent. Each 304
// carries X-Rev with its number, so a test can tell whether the transport
// persisted a revalidated header through the store.
type origin struct {
	*httptest.Server
	mu         sync.Mutex
	conditions []string // If-None-Match of each GET, "" when none
	notMod     int
}

const originBody = "the document body, served once"

func newOrigin(t *testing.T) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		inm := r.Header.Get("If-None-Match")
		o.conditions = append(o.conditions, inm)
		w.Header().Set("Etag", `"v1"`)
		w.Header().Set("Content-Type", "text/plain")
		if inm == `"v1"` {
			o.notMod++
			if o.notMod == 1 {
				w.Header().Set("X-Rev", "2")
			}
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("X-Rev", "1")
		io.WriteString(w, originBody)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) sent() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.conditions...)
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(body)
}

func TestTransportOverHTTPCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		o := newOrigin(t)
		tr := etagcache.NewTransport(s, etagcache.WithBase(o.Client().Transport))
		client := tr.Client()

		resp, body := get(t, client, o.URL)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, originBody, body)
		assert.Empty(t, resp.Header.Get("X-From-Cache"))
		require.Equal(t, int64(1), tr.Stats().Stored, "first response not stored")

		// Revalidated: the origin answers 304, the caller gets the stored
		// body as a 200.
		resp, body = get(t, client, o.URL)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, originBody, body)
		assert.Equal(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp))
		assert.Equal(t, "2", resp.Header.Get("X-Rev"))
		assert.Equal(t, []string{"", `"v1"`}, o.sent())

		// The 304's new header was persisted by a full Put (the store has
		// no HeaderUpdater): the next 304 carries no X-Rev, yet the caller
		// sees the one the previous 304 brought.
		resp, body = get(t, client, o.URL)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, originBody, body)
		assert.Equal(t, "2", resp.Header.Get("X-Rev"))

		// An unsafe request invalidates through Store.Delete: the next GET
		// is unconditional.
		presp, err := client.Post(o.URL, "text/plain", strings.NewReader("change"))
		require.NoError(t, err)
		require.NoError(t, presp.Body.Close())
		resp, body = get(t, client, o.URL)
		assert.Equal(t, originBody, body)
		assert.Empty(t, resp.Header.Get("X-From-Cache"))
		assert.Equal(t, []string{"", `"v1"`, `"v1"`, ""}, o.sent())

		st := tr.Stats()
		assert.Equal(t, int64(2), st.Revalidated)
		assert.Zero(t, st.StoreErrors)
	})
}

// A diskcache outlives the process: a new store and transport over the same
// directory revalidate what the first one stored.
func TestTransportDiskCachePersists(t *testing.T) {
	dir := t.TempDir()
	o := newOrigin(t)

	first := etagcache.NewTransport(httpcachestore.New(diskcache.New(dir)), etagcache.WithBase(o.Client().Transport))
	_, body := get(t, first.Client(), o.URL)
	require.Equal(t, originBody, body)
	require.Equal(t, int64(1), first.Stats().Stored)

	second := etagcache.NewTransport(httpcachestore.New(diskcache.New(dir)), etagcache.WithBase(o.Client().Transport))
	resp, body := get(t, second.Client(), o.URL)
	assert.Equal(t, originBody, body)
	assert.Equal(t, etagcache.ResultRevalidated, etagcache.ResultOf(resp))
	assert.Equal(t, []string{"", `"v1"`}, o.sent())
}
