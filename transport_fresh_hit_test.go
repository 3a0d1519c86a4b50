package etagcache

// Fresh hits from the memory store: what they allocate, the header each
// caller gets, the per-second templates and the replayed decision.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fresh hit allocates the same at any body size: the stored bytes are
// served as they are, never copied.
func TestFreshHitAllocationsIndependentOfBodySize(t *testing.T) {
	allocs := allocsBySize(t, func(size int) *Transport {
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{"Cache-Control": {"max-age=3600"}, "Content-Length": {strconv.Itoa(size)}}
			return &http.Response{StatusCode: 200, Header: h, ContentLength: int64(size),
				Body: io.NopCloser(strings.NewReader(strings.Repeat("x", size))), Request: r}, nil
		})
		return NewTransport(NewMemoryStore(64<<20), WithBase(base), WithFreshness(true))
	}, func(resp *http.Response) bool { return ResultOf(resp) == ResultHit })
	assert.Equal(t, allocs[1<<10], allocs[16<<20], "allocations grow with the body: %v", allocs)
	assert.Equal(t, allocs[1<<10], allocs[1<<20], "allocations grow with the body: %v", allocs)
	// The caller's header map (a map and its group) and the response with
	// its body reader.
	assert.LessOrEqual(t, allocs[1<<10], 3.0, "a fresh hit allocates too much: %v", allocs)
	t.Logf("allocations per fresh hit: %v", allocs)
}

// Hits in the same second copy one header template: each caller's map is
// its own, and the template's bytes count in the memory store's bound until
// the entry leaves it.
func TestFreshHitHeaderIsTheCallers(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "hello")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	ms := tr.store.(*MemoryStore)

	_, _ = getBody(t, tr, o.URL)
	stored := ms.Size()
	first, _ := getBody(t, tr, o.URL)
	require.Equal(t, ResultHit, ResultOf(first))
	assert.Equal(t, stored+templateSize(len(first.Header)), ms.Size(), "the template is counted once")
	first.Header.Set("Etag", `"mine"`)
	first.Header.Del("Age")
	first.Header.Add("Cache-Status", "someone; hit")
	first.Header["X-Added"] = []string{"1"}

	second, _ := getBody(t, tr, o.URL)
	require.Equal(t, ResultHit, ResultOf(second))
	assert.Equal(t, `"v1"`, second.Header.Get("Etag"))
	assert.Equal(t, "0", second.Header.Get("Age"))
	assert.Equal(t, []string{"etagcache; hit; ttl=60"}, second.Header.Values("Cache-Status"))
	assert.NotContains(t, second.Header, "X-Added")
	assert.Equal(t, stored+templateSize(len(second.Header)), ms.Size())

	clk.Advance(5 * time.Second) // a new template for the new Age, counted once still
	third, _ := getBody(t, tr, o.URL)
	assert.Equal(t, "5", third.Header.Get("Age"))
	assert.Equal(t, "etagcache; hit; ttl=55", third.Header.Get("Cache-Status"))
	assert.Equal(t, stored+templateSize(len(third.Header)), ms.Size())

	require.NoError(t, ms.Delete(context.Background(), requestKey(third.Request)))
	assert.Equal(t, int64(0), ms.Size(), "the template's bytes left with the entry")
}

// Concurrent hits while the clock moves: every response's Age and ttl come
// from the same moment (they add up to the lifetime), and the store counts
// one template for the entry at the end.
func TestFreshHitTemplatesUnderConcurrency(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=3600", `"v1"`, "hello")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	ms := tr.store.(*MemoryStore)
	_, _ = getBody(t, tr, o.URL)
	stored := ms.Size()

	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if g == 0 && i%10 == 0 {
					clk.Advance(time.Second)
				}
				req, _ := http.NewRequest(http.MethodGet, o.URL, nil)
				resp, err := tr.RoundTrip(req)
				if !assert.NoError(t, err) {
					return
				}
				_ = resp.Body.Close()
				age, _ := strconv.Atoi(resp.Header.Get("Age"))
				var ttl int
				_, err = fmt.Sscanf(resp.Header.Get("Cache-Status"), "etagcache; hit; ttl=%d", &ttl)
				assert.NoError(t, err)
				assert.Equal(t, 3600, age+ttl, "Age and ttl of different moments")
			}
		}()
	}
	wg.Wait()
	last, _ := getBody(t, tr, o.URL)
	assert.Equal(t, stored+templateSize(len(last.Header)), ms.Size())
	assert.Equal(t, int64(1), o.gets.Load())
}

// A hit for a request without directives replays the previous one's header
// while the entry's age stays in the same whole second, the only way decide
// reads the time: never past the entry's freshness, never for a request
// with directives, never under another configuration.
func TestPlainHitReplaysOnlyDecidesAnswer(t *testing.T) {
	clk := &fakeClock{t: time.Now().Truncate(time.Second)} // Date then has no fraction
	o := newFreshOrigin(t, clk, "max-age=2", `"v1"`, "hello")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	_, _ = getBody(t, tr, o.URL)
	ua := []string{"User-Agent", "poller/1.0"} // says nothing about caching

	for i, step := range []struct {
		advance  time.Duration
		kv       []string
		result   Result
		age, ttl string
	}{
		{0, nil, ResultHit, "0", "2"},
		{900 * time.Millisecond, nil, ResultHit, "0", "2"}, // replayed
		{100 * time.Millisecond, ua, ResultHit, "1", "1"},
		{0, []string{"Cache-Control", "max-age=0"}, ResultRevalidated, "", ""},
		{0, ua, ResultHit, "0", "2"}, // the revalidated entry is another one
		{999 * time.Millisecond, nil, ResultHit, "0", "2"},
		{0, []string{"Pragma", "no-cache"}, ResultRevalidated, "", ""},
		{0, nil, ResultHit, "0", "2"}, // received 0.999 s after its Date
		{time.Millisecond, ua, ResultHit, "1", "1"},
		{999 * time.Millisecond, nil, ResultHit, "1", "1"},
		{time.Millisecond, ua, ResultRevalidated, "", ""}, // stale at 2 s
	} {
		clk.Advance(step.advance)
		resp, body := getBody(t, tr, o.URL, step.kv...)
		require.Equal(t, "hello", body)
		require.Equal(t, step.result, ResultOf(resp), "step %d", i)
		if step.result == ResultHit {
			assert.Equal(t, step.age, resp.Header.Get("Age"), "step %d", i)
			assert.Equal(t, "etagcache; hit; ttl="+step.ttl, resp.Header.Get("Cache-Status"), "step %d", i)
		}
	}
	assert.Equal(t, int64(3), o.conds.Load())

	// The template of the latest hit is replayed for its configuration only.
	req, _ := http.NewRequest(http.MethodGet, o.URL, nil)
	_, _ = getBody(t, tr, o.URL)
	e, err := tr.store.Get(context.Background(), requestKey(req), "")
	require.NoError(t, err)
	resident := clk.Now().Sub(e.ResponseTime)
	assert.NotNil(t, replayHit(e, resident, tr.fx.cfg))
	other := tr.fx.cfg
	other.staleIfError = time.Hour
	assert.Nil(t, replayHit(e, resident, other))
	assert.Nil(t, replayHit(e, resident+time.Second, tr.fx.cfg))
}
