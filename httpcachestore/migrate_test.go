package httpcachestore_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
)

// countingBase is the program's own base transport, kept across the switch.
type countingBase struct{ n int }

func (b *countingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	b.n++
	return http.DefaultTransport.RoundTrip(r)
}

// The README's migration, line for line: a program that used
// httpcache.NewTransport(diskcache.New(dir)) with its own base transport
// switches to etagcache on the same directory. httpcache's entries stay
// where they are and are not read; the first request after the switch is a
// miss, the next a revalidation, and ResultOf answers what X-From-Cache did.
func TestMigrationFromHTTPCacheKeepsBackendAndBase(t *testing.T) {
	o := newOrigin(t)
	dir := t.TempDir()
	base := &countingBase{}

	// Before.
	{
		tr := httpcache.NewTransport(diskcache.New(dir))
		tr.Transport = base
		client := tr.Client()
		for range 2 {
			resp, err := client.Get(o.URL)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		assert.Equal(t, 2, base.n)
	}

	// After.
	tr := etagcache.NewTransport(httpcachestore.New(diskcache.New(dir)), etagcache.WithBase(base))
	client := tr.Client()
	var fromCache []bool
	for range 2 {
		resp, err := client.Get(o.URL)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, originBody, string(body))
		fromCache = append(fromCache, etagcache.ResultOf(resp) == etagcache.ResultRevalidated)
	}
	assert.Equal(t, []bool{false, true}, fromCache)
	assert.Equal(t, 4, base.n, "the base transport sends every request")

	// httpcache's own entry is still in the directory, untouched.
	raw, ok := diskcache.New(dir).Get(o.URL)
	require.True(t, ok, "httpcache's entry is gone")
	assert.Contains(t, string(raw), originBody)
}
