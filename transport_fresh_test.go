package etagcache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is the Transport's clock in these tests: freshness moves only
// when a test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// freshOrigin is an origin whose answer the test sets: Cache-Control,
// ETag, body and a mode ("ok", "503", "close": the connection is dropped
// without an answer). hold, when set, makes each request wait for it.
type freshOrigin struct {
	*httptest.Server
	mu          sync.Mutex
	cc, etag    string
	body        string
	mode        string
	hold        chan struct{}
	gets, conds atomic.Int64
	inside      atomic.Int64 // requests inside the handler now
	lastINM     atomic.Value // the last request's If-None-Match
	lastReqCC   atomic.Value // the last request's Cache-Control
}

func newFreshOrigin(t *testing.T, clk *fakeClock, cc, etag, body string) *freshOrigin {
	o := &freshOrigin{cc: cc, etag: etag, body: body, mode: "ok"}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.inside.Add(1)
		defer o.inside.Add(-1)
		o.mu.Lock()
		cc, etag, body, mode, hold := o.cc, o.etag, o.body, o.mode, o.hold
		o.mu.Unlock()
		inm := r.Header.Get("If-None-Match")
		o.lastINM.Store(inm)
		o.lastReqCC.Store(r.Header.Get("Cache-Control"))
		if inm != "" {
			o.conds.Add(1)
		} else {
			o.gets.Add(1)
		}
		if hold != nil {
			<-hold
		}
		switch mode {
		case "503":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case "close":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat)) // the origin's clock is ours
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
			if inm == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *freshOrigin) set(f func(o *freshOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

// newFreshTransport is a Transport over its own http.Transport (so its idle
// connections can be closed) with the fake clock.
func newFreshTransport(t *testing.T, clk *fakeClock, opts ...Option) *Transport {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr := NewTransport(NewMemoryStore(0), append([]Option{WithBase(base)}, opts...)...)
	tr.fx.clock = clk.Now
	return tr
}

func getBody(t *testing.T, tr *Transport, url string, kv ...string) (*http.Response, string) {
	t.Helper()
	return fetch(t, tr.Client(), url, kv...)
}

// goroutinesBack waits, with a bound, for the goroutine count to fall back
// to base: background revalidations and coalesced exchanges must not leak.
func goroutinesBack(t *testing.T, base int, trs ...*Transport) {
	t.Helper()
	for _, tr := range trs {
		tr.waitBackground()
		tr.CloseIdleConnections()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, was %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
	}
}

func TestFreshHitServedWithoutTheOrigin(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "hello")
	tr := newFreshTransport(t, clk, WithFreshness(true))

	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, "hello", body)
	assert.Equal(t, ResultMiss, ResultOf(resp))

	clk.Advance(20 * time.Second)
	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, "hello", body)
	assert.Equal(t, int64(1), o.gets.Load()+o.conds.Load(), "9111 4.2: a fresh response is served without the origin")
	assert.Equal(t, ResultHit, ResultOf(resp))
	assert.Equal(t, "1", resp.Header.Get("X-From-Cache"))
	age, err := strconv.Atoi(resp.Header.Get("Age"))
	require.NoError(t, err, "9111 5.1: Age on a response served from the store")
	assert.InDelta(t, 20, age, 2)
	assert.Regexp(t, `^etagcache; hit; ttl=(39|40|41)$`, resp.Header.Get("Cache-Status"))
	assert.Equal(t, int64(1), tr.Stats().Hits)

	clk.Advance(time.Minute)
	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, "hello", body)
	assert.Equal(t, int64(1), o.conds.Load(), "stale: revalidated")
	assert.Equal(t, ResultRevalidated, ResultOf(resp))
	assert.Empty(t, resp.Header.Get("X-From-Cache"), "the origin was asked")

	clk.Advance(30 * time.Second)
	resp, _ = getBody(t, tr, o.URL)
	assert.Equal(t, ResultHit, ResultOf(resp), "9111 4.3.4: the 304 made the entry fresh again")
	assert.Equal(t, int64(1), o.conds.Load())
}

func TestDefaultModeStillAsksTheOrigin(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=3600", `"v1"`, "hello")
	tr := newFreshTransport(t, clk)
	for range 3 {
		resp, body := getBody(t, tr, o.URL)
		assert.Equal(t, "hello", body)
		assert.NotEqual(t, ResultHit, ResultOf(resp))
	}
	assert.Equal(t, int64(1), o.gets.Load())
	assert.Equal(t, int64(2), o.conds.Load(), "without WithFreshness every GET revalidates")

	nv := newFreshOrigin(t, clk, "max-age=3600", "", "no validator")
	getBody(t, tr, nv.URL)
	getBody(t, tr, nv.URL)
	assert.Equal(t, int64(2), nv.gets.Load(), "without freshness a response without validator is not stored")
}

func TestFreshnessStoresResponsesWithoutValidators(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", "", "plain")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, "plain", body)
	assert.Equal(t, ResultHit, ResultOf(resp))
	assert.Equal(t, int64(1), o.gets.Load())

	clk.Advance(2 * time.Minute)
	resp, _ = getBody(t, tr, o.URL)
	assert.Equal(t, ResultMiss, ResultOf(resp), "stale without validator: fetched again")
	assert.Equal(t, int64(2), o.gets.Load())
}

func TestRequestDirectivesInFreshnessMode(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "doc")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)

	resp, _ := getBody(t, tr, o.URL, "Cache-Control", "no-cache")
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "9111 5.2.1.4")
	assert.Contains(t, resp.Header.Get("Cache-Status"), "fwd=request")

	resp, _ = getBody(t, tr, o.URL, "Pragma", "no-cache")
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "9111 5.4")

	clk.Advance(70 * time.Second)
	resp, _ = getBody(t, tr, o.URL, "Cache-Control", "max-stale=30")
	assert.Equal(t, ResultHit, ResultOf(resp), "9111 5.2.1.2")
	assert.Contains(t, resp.Header.Get("Cache-Status"), "ttl=-")

	resp, _ = getBody(t, tr, o.URL, "Cache-Control", "only-if-cached")
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, "9111 5.2.1.7: stale and only-if-cached")
}

func TestContextOverrides(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "one")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	ctxGet := func(ctx context.Context) (*http.Response, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body.Close()
		return resp, string(b)
	}

	resp, _ := ctxGet(OnlyIfCached(context.Background()))
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Zero(t, o.gets.Load()+o.conds.Load(), "only-if-cached never asks the origin")

	resp, _ = ctxGet(WithoutStore(context.Background()))
	assert.Equal(t, ResultBypass, ResultOf(resp))
	assert.Equal(t, "", o.lastReqCC.Load(), "no no-store is sent upstream")
	resp, _ = ctxGet(OnlyIfCached(context.Background()))
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, "WithoutStore stored nothing")

	ctxGet(context.Background())
	o.set(func(o *freshOrigin) { o.body, o.etag = "two", `"v2"` })
	resp, body := ctxGet(context.Background())
	assert.Equal(t, "one", body, "fresh")
	resp, body = ctxGet(WithRefresh(context.Background()))
	assert.Equal(t, "two", body)
	assert.Equal(t, "", o.lastINM.Load(), "a refresh sends no validators")
	assert.Contains(t, resp.Header.Get("Cache-Status"), "fwd=request")
	resp, body = ctxGet(OnlyIfCached(context.Background()))
	assert.Equal(t, "two", body, "the refresh replaced the entry")
	assert.Equal(t, ResultHit, ResultOf(resp))

	// Overrides add up, whatever lies between them.
	type other struct{}
	nested := OnlyIfCached(context.WithValue(WithRefresh(context.Background()), other{}, 1))
	assert.Equal(t, ctlOnlyIfCached|ctlRefresh, controlOf(nested))
	assert.False(t, withoutStore(nested))
	o.set(func(o *freshOrigin) { o.body, o.etag = "three", `"v3"` })
	resp, body = ctxGet(WithoutStore(WithRefresh(context.Background())))
	assert.Equal(t, "three", body)
	assert.Equal(t, ResultBypass, ResultOf(resp), "WithoutStore wins over WithRefresh")
	asked := o.gets.Load() + o.conds.Load()
	resp, _ = ctxGet(WithoutStore(nested))
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, "OnlyIfCached keeps its promise: no store, no origin")
	assert.Equal(t, asked, o.gets.Load()+o.conds.Load())
}

func TestIgnoredQueryParams(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "doc")
	tr := newFreshTransport(t, clk, WithFreshness(true), WithIgnoredQueryParams("_", "token"))
	getBody(t, tr, o.URL+"/a?x=1&_=123&token=abc")
	resp, _ := getBody(t, tr, o.URL+"/a?x=1&_=456&token=def")
	assert.Equal(t, ResultHit, ResultOf(resp), "ignored parameters are not part of the key")
	resp, _ = getBody(t, tr, o.URL+"/a?x=2&_=456")
	assert.Equal(t, ResultMiss, ResultOf(resp), "other parameters still are")
	assert.Equal(t, "http://h/a?x=1", tr.stripIgnored("http://h/a?x=1&_=1&to%6Ben=2"))
	assert.Equal(t, "http://h/a", tr.stripIgnored("http://h/a?_=1"))
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=1, stale-while-revalidate=60", `"v1"`, "doc")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	clk.Advance(10 * time.Second)

	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })
	for range 8 {
		resp, body := getBody(t, tr, o.URL)
		assert.Equal(t, "doc", body, "5861 3: stale served at once")
		assert.Equal(t, ResultHit, ResultOf(resp))
		assert.Contains(t, resp.Header.Get("Cache-Status"), "detail=stale-while-revalidate")
	}
	waitFor(t, "the background revalidation at the origin", func() bool { return o.inside.Load() == 1 })
	assert.Equal(t, int64(1), o.conds.Load(), "one background revalidation per entry at a time")
	close(hold)
	o.set(func(o *freshOrigin) { o.hold = nil })
	tr.waitBackground()

	resp, _ := getBody(t, tr, o.URL)
	assert.Equal(t, ResultHit, ResultOf(resp), "the background 304 made the entry fresh")
	assert.NotContains(t, resp.Header.Get("Cache-Status"), "stale")
	assert.Equal(t, int64(1), o.conds.Load())
	goroutinesBack(t, base, tr)
}

func TestStaleWhileRevalidateIsBounded(t *testing.T) {
	// The caller's context ends at once; the background revalidation
	// outlives it (WithoutCancel) and still completes.
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=1, stale-while-revalidate=60", `"v1"`, "doc")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	clk.Advance(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	cancel()
	tr.waitBackground()
	assert.Equal(t, int64(1), o.conds.Load())
}

func TestStaleIfErrorOriginDownAndBack(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=1, stale-if-error=60", `"v1"`, "doc")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	clk.Advance(10 * time.Second)

	for _, mode := range []string{"503", "close"} {
		o.set(func(o *freshOrigin) { o.mode = mode })
		resp, body := getBody(t, tr, o.URL)
		assert.Equal(t, http.StatusOK, resp.StatusCode, mode)
		assert.Equal(t, "doc", body, mode)
		assert.Equal(t, ResultHit, ResultOf(resp), mode)
		assert.Contains(t, resp.Header.Get("Cache-Status"), "detail=stale-if-error", mode)
		assert.Equal(t, "1", resp.Header.Get("X-From-Cache"))
	}

	o.set(func(o *freshOrigin) { o.mode = "ok" })
	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, "doc", body)
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "the origin is back")

	clk.Advance(2 * time.Minute) // past max-age and the stale-if-error window
	o.set(func(o *freshOrigin) { o.mode = "503" })
	resp, _ = getBody(t, tr, o.URL)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "outside the window the 5xx goes through")
	o.set(func(o *freshOrigin) { o.mode = "close" })
	_, err := tr.Client().Get(o.URL)
	assert.Error(t, err, "outside the window the network error goes through")
	goroutinesBack(t, base, tr)
}

func TestStaleIfErrorOption(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run("freshness="+strconv.FormatBool(fresh), func(t *testing.T) {
			clk := newFakeClock()
			o := newFreshOrigin(t, clk, "", `"v1"`, "doc")
			tr := newFreshTransport(t, clk, WithFreshness(fresh), WithStaleIfError(time.Hour))
			getBody(t, tr, o.URL)
			clk.Advance(30 * time.Minute)
			o.set(func(o *freshOrigin) { o.mode = "close" })
			resp, body := getBody(t, tr, o.URL)
			assert.Equal(t, "doc", body)
			assert.Contains(t, resp.Header.Get("Cache-Status"), "detail=stale-if-error")

			mr := newFreshOrigin(t, clk, "must-revalidate", `"v1"`, "doc")
			getBody(t, tr, mr.URL)
			mr.set(func(o *freshOrigin) { o.mode = "close" })
			_, err := tr.Client().Get(mr.URL)
			assert.Error(t, err, "9111 5.2.2.2: must-revalidate is never served stale")
		})
	}
}

func TestRangeFromAFreshCompleteResponse(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "0123456789")
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	for spec, want := range map[string]string{"bytes=0-1": "01", "bytes=7-": "789", "bytes=-3": "789", "bytes=8-100": "89"} {
		resp, body := getBody(t, tr, o.URL, "Range", spec)
		assert.Equal(t, http.StatusPartialContent, resp.StatusCode, spec)
		assert.Equal(t, want, body, spec)
		assert.Equal(t, ResultHit, ResultOf(resp), spec)
	}
	assert.Equal(t, int64(1), o.gets.Load())
	resp, _ := getBody(t, tr, o.URL, "Range", "bytes=0-1,3-4")
	assert.NotEqual(t, ResultHit, ResultOf(resp), "several ranges go to the origin")
}

// RFC 9111 §4.1: semantically equal Accept-* lists select the same variant.
func TestVaryDigestNormalisesAcceptLists(t *testing.T) {
	names := []string{"Accept-Language"}
	d := func(v string) [32]byte { return varyDigest("", names, http.Header{"Accept-Language": {v}}) }
	assert.Equal(t, d("en, de"), d("de, en"), "order")
	assert.Equal(t, d("en, de"), d("eN, De"), "case")
	assert.Equal(t, d("en, de"), d(" en ,   de"), "white space")
	assert.Equal(t, d("en;q=0.5, de"), d("de, en; q=0.5"), "weights stay with their member")
	assert.NotEqual(t, d("en"), d("de"))
	assert.NotEqual(t, d("en;q=0.5, de"), d("en, de;q=0.5"))
	other := func(v string) [32]byte { return varyDigest("", []string{"X-Token"}, http.Header{"X-Token": {v}}) }
	assert.NotEqual(t, other("a, b"), other("b, a"), "other fields keep their order")
	assert.NotEqual(t, other("A"), other("a"), "and their case")
}

// RFC 9111 §3.3-3.4: a single-range 206 is kept, serves ranges inside it,
// and a later full GET asks only for the rest and combines the two.
func TestPartialResponseStoredAndCompleted(t *testing.T) {
	const content = "0123456789abcdef"
	var ranges []string
	var mu sync.Mutex
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range")+"|"+r.Header.Get("If-Range"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"strong"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(content))
	}))
	defer o.Close()
	clk := newFakeClock()
	tr := newFreshTransport(t, clk, WithFreshness(true))

	resp, body := getBody(t, tr, o.URL, "Range", "bytes=0-7")
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, "01234567", body)
	resp, body = getBody(t, tr, o.URL, "Range", "bytes=2-4")
	assert.Equal(t, "234", body, "a range inside the stored part")
	assert.Equal(t, ResultHit, ResultOf(resp))
	assert.Equal(t, "bytes 2-4/16", resp.Header.Get("Content-Range"))

	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, content, body, "stored part and the rest, combined")
	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, content, body)
	assert.Equal(t, ResultHit, ResultOf(resp), "the combined response was stored")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"bytes=0-7|", `bytes=8-|"strong"`}, ranges)
}

// RFC 9110 §9.3.3: a POST answer naming its own URI in Content-Location,
// with an explicit lifetime, answers a later GET (freshness mode only).
func TestPostAnswerWithContentLocationServesGets(t *testing.T) {
	var gets atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Location", r.URL.Path)
		fmt.Fprint(w, r.Method+" answer")
	}))
	defer o.Close()
	clk := newFakeClock()
	for _, fresh := range []bool{true, false} {
		tr := newFreshTransport(t, clk, WithFreshness(fresh))
		resp, err := tr.Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "POST answer", string(b))
		resp, body := getBody(t, tr, o.URL+"/doc")
		if fresh {
			assert.Equal(t, "POST answer", body)
			assert.Equal(t, ResultHit, ResultOf(resp))
		} else {
			assert.Equal(t, "GET answer", body, "the default mode only invalidates")
		}
	}
	assert.Equal(t, int64(1), gets.Load())
}

// A coded body the request did not accept is stored for requests with the
// very same Accept-Encoding only (the origin chose it for them).
func TestUnacceptedCodingIsReplayedOnlyToTheSameAcceptEncoding(t *testing.T) {
	var n atomic.Int64
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Encoding", "x-odd")
		fmt.Fprint(w, "odd bytes")
	}))
	defer o.Close()
	clk := newFakeClock()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL, "Accept-Encoding", "gzip")
	resp, _ := getBody(t, tr, o.URL, "Accept-Encoding", "gzip")
	assert.Equal(t, ResultHit, ResultOf(resp), "same Accept-Encoding: the origin's choice again")
	resp, _ = getBody(t, tr, o.URL, "Accept-Encoding", "br")
	assert.NotEqual(t, ResultHit, ResultOf(resp), "another Accept-Encoding never gets it from the store")
	assert.Equal(t, int64(2), n.Load())
}
