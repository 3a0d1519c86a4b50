package etagcache

import (
	"io"
	"net/http"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const swr = "max-age=10, stale-while-revalidate=600"

// A caller may reuse its request once RoundTrip has returned and the body
// is closed: a background refresh started by it files its answer under
// the variant that was asked for, not under what the caller set since.
func TestRefreshOwnsWhatItReads(t *testing.T) {
	clk := newFakeClock()
	o := newVersionedOrigin(t, clk, swr, "Accept-Language")
	tr := newFreshTransport(t, clk, WithFreshness(true), WithCoalescing(false))
	_, body := getBody(t, tr, o.URL+"/doc", "Accept-Language", "en")
	require.Equal(t, "path=/doc v=1 lang=en", body)
	_, body = getBody(t, tr, o.URL+"/doc", "Accept-Language", "fr")
	require.Equal(t, "path=/doc v=1 lang=fr", body)

	o.set(func(o *versionedOrigin) {
		o.version["/doc"] = 2
		o.gate, o.arrived = make(chan struct{}), make(chan string, 1)
	})
	clk.Advance(20 * time.Second)
	req, err := http.NewRequest(http.MethodGet, o.URL+"/doc", nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Language", "en")
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, "path=/doc v=1 lang=en", string(b))
	require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
	<-o.arrived
	req.Header.Set("Accept-Language", "fr") // the caller's request is the caller's again
	close(o.gate)
	tr.waitBackground()

	_, body = getBody(t, tr, o.URL+"/doc", "Accept-Language", "fr")
	assert.Equal(t, "path=/doc v=1 lang=fr", body, "the refresh's answer for en was filed under fr")
	resp, body = getBody(t, tr, o.URL+"/doc", "Accept-Language", "en")
	assert.Equal(t, "path=/doc v=2 lang=en", body)
	assert.Equal(t, ResultHit, ResultOf(resp))
}

// Without coalescing too, each entry has its own refresh: one held by a
// slow origin does not keep another resource's from running.
func TestRefreshPerEntry(t *testing.T) {
	clk := newFakeClock()
	o := newVersionedOrigin(t, clk, swr, "")
	tr := newFreshTransport(t, clk, WithFreshness(true), WithCoalescing(false))
	getBody(t, tr, o.URL+"/a")
	getBody(t, tr, o.URL+"/b")
	clk.Advance(20 * time.Second)

	o.set(func(o *versionedOrigin) { o.gate, o.arrived = make(chan struct{}), make(chan string, 2) })
	resp, _ := getBody(t, tr, o.URL+"/a")
	require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
	require.Equal(t, "/a", <-o.arrived)
	resp, _ = getBody(t, tr, o.URL+"/b")
	require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
	// /b's refresh reaches the origin while /a's is held there.
	select {
	case p := <-o.arrived:
		assert.Equal(t, "/b", p)
	case <-time.After(10 * time.Second): // a failure, not a wait: it comes at once
		t.Fatal("/b was not refreshed while /a's refresh was held")
	}
	close(o.gate)
	tr.waitBackground()
	assert.Equal(t, 1, o.condsFor("/a"))
	assert.Equal(t, 1, o.condsFor("/b"))
}

// Close stops the refreshes in flight and waits for them; at most
// maxRefreshes run at once; after Close a stale entry is revalidated
// before it is served, and nothing is left running.
func TestCloseStopsRefreshes(t *testing.T) {
	clk := newFakeClock()
	o := newVersionedOrigin(t, clk, swr, "")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	const n = maxRefreshes + 4
	for i := range n {
		getBody(t, tr, o.URL+"/p"+strconv.Itoa(i))
	}
	clk.Advance(20 * time.Second)
	o.set(func(o *versionedOrigin) { o.gate, o.arrived = make(chan struct{}), make(chan string, n) })
	for i := range n {
		resp, _ := getBody(t, tr, o.URL+"/p"+strconv.Itoa(i))
		require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
	}
	for range maxRefreshes {
		<-o.arrived
	}
	tr.fx.bg.mu.Lock()
	running := len(tr.fx.bg.running)
	tr.fx.bg.mu.Unlock()
	assert.Equal(t, maxRefreshes, running, "refreshes in flight")

	require.NoError(t, tr.Close())
	tr.fx.bg.mu.Lock()
	assert.Empty(t, tr.fx.bg.running)
	tr.fx.bg.mu.Unlock()
	assert.Empty(t, o.arrived, "a refresh started past the bound")

	close(o.gate)
	resp, body := getBody(t, tr, o.URL+"/p0")
	assert.Equal(t, "path=/p0 v=1 lang=", body)
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "after Close, a stale entry is revalidated in the foreground")
	require.NoError(t, tr.Close(), "Close twice")
	goroutinesBack(t, base, tr)
}
