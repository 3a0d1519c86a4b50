package etagcache

// Tests of behaviours 8 to 12 of the transport: invalidation, Vary,
// Cache-Status, store failures and concurrency.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Point 8: unsafe methods invalidate the target and same-origin locations.
func TestUnsafeMethodsInvalidate(t *testing.T) {
	other := newRecordingOrigin(t, etagHandler(`"o"`, "other origin"))
	var postStatus atomic.Int32
	postStatus.Store(201)
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			etagHandler(`"x"`, "doc "+r.URL.Path)(w, r)
			return
		}
		w.Header().Set("Location", "/created")
		w.Header().Set("Content-Location", other.URL+"/elsewhere")
		w.WriteHeader(int(postStatus.Load()))
	})
	ms := NewMemoryStore(0)
	c := NewTransport(ms).Client()
	for _, u := range []string{o.URL + "/items", o.URL + "/created", other.URL + "/elsewhere"} {
		fetch(t, c, u)
	}
	// Another user's variant of the target goes too.
	fetch(t, c, o.URL+"/items", "Authorization", "Bearer someone")
	require.Equal(t, 4, ms.Len())

	postStatus.Store(400)
	resp, err := c.Post(o.URL+"/items", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 4, ms.Len(), "a failed POST invalidated")

	for _, m := range []string{http.MethodPost, http.MethodDelete, "PATCH"} {
		postStatus.Store(201)
		fetch(t, c, o.URL+"/items")
		fetch(t, c, o.URL+"/created")
		req, _ := http.NewRequest(m, o.URL+"/items", strings.NewReader("x"))
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		ctx := context.Background()
		_, err = ms.Get(ctx, cacheKey(req.URL), "")
		assert.ErrorIs(t, err, ErrNotFound, m)
		_, err = ms.Get(ctx, strings.TrimSuffix(cacheKey(req.URL), "items")+"created", "")
		assert.ErrorIs(t, err, ErrNotFound, m+": same-origin Location")
		ou, _ := url.Parse(other.URL + "/elsewhere")
		_, err = ms.Get(ctx, cacheKey(ou), "")
		assert.NoError(t, err, m+": another origin's entry was invalidated")
	}
}

// Point 9: Vary variants live side by side.
func TestVaryVariantsLiveSideBySide(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		accept := r.Header.Get("Accept")
		etag := `"` + strings.ReplaceAll(accept, "/", "-") + `"`
		w.Header().Set("Vary", "Accept")
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "as "+accept)
	})
	ms := NewMemoryStore(0)
	c := NewTransport(ms).Client()
	seq := []struct{ accept, wantINM, wantStatus string }{
		{"application/json", "", "fwd=uri-miss; stored"},
		{"text/html", "", "fwd=vary-miss; stored"},
		{"application/json", `"application-json"`, "fwd=stale; fwd-status=304"},
		{"text/html", `"text-html"`, "fwd=stale; fwd-status=304"},
		{"text/html", `"text-html"`, "fwd=stale; fwd-status=304"},
		{"image/png", "", "fwd=vary-miss; stored"},
	}
	for i, s := range seq {
		resp, body := fetch(t, c, o.URL, "Accept", s.accept)
		assert.Equal(t, "as "+s.accept, body, i)
		assert.Equal(t, s.wantINM, o.last().Get("If-None-Match"), i)
		assert.Equal(t, "etagcache; "+s.wantStatus, resp.Header.Get(HeaderCacheStatus), i)
	}
	assert.Equal(t, 3, ms.Len())
}

// Point 10: Cache-Status and X-From-Cache (only when the origin was not
// contacted, so never in the default mode).
func TestCacheStatusValues(t *testing.T) {
	var version atomic.Int32
	version.Store(1)
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Status", "UpstreamCDN; hit")
		etagHandler(fmt.Sprintf(`"v%d"`, version.Load()), "v")(w, r)
	})
	c := NewTransport(NewMemoryStore(0)).Client()
	steps := []struct {
		change   bool
		kv       []string
		want     string
		fromCach string
	}{
		{false, nil, "UpstreamCDN; hit, etagcache; fwd=uri-miss; stored", ""},
		{false, nil, "UpstreamCDN; hit, etagcache; fwd=stale; fwd-status=304", ""},
		{true, nil, "UpstreamCDN; hit, etagcache; fwd=stale; fwd-status=200; stored", ""},
		{false, []string{"Range", "bytes=0-0"}, "UpstreamCDN; hit, etagcache; fwd=bypass", ""},
	}
	for i, s := range steps {
		if s.change {
			version.Add(1)
		}
		resp, _ := fetch(t, c, o.URL, s.kv...)
		assert.Equal(t, s.want, resp.Header.Get(HeaderCacheStatus), i)
		assert.Len(t, resp.Header.Values(HeaderCacheStatus), 1, i)
		assert.Equal(t, s.fromCach, resp.Header.Get(HeaderFromCache), i)
	}
	o2 := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "no validator") })
	resp, _ := fetch(t, c, o2.URL)
	assert.Equal(t, "etagcache; fwd=uri-miss", resp.Header.Get(HeaderCacheStatus))
}

// Point 11: a failing store never fails a request.
func TestFailingStoreNeverFailsARequest(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"f"`, "still served"))
	boom := fmt.Errorf("disk on fire")
	spy := &spyStore{Store: NewMemoryStore(0), failGet: boom, failPut: boom, failDelete: boom}
	var logs bytes.Buffer
	tr := NewTransport(spy, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := tr.Client()
	for i := 0; i < 3; i++ {
		resp, body := fetch(t, c, o.URL)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "still served", body)
	}
	resp, err := c.Post(o.URL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int64(7), tr.Stats().StoreErrors) // 3 gets, 3 puts, 1 delete
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), "disk on fire")
}

// Point 11: a corrupt entry is a miss and is deleted.
func TestCorruptEntryIsAMissAndDeleted(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"c"`, "fresh"))
	ms := NewMemoryStore(0)
	u, _ := url.Parse(o.URL)
	require.NoError(t, ms.Put(context.Background(), cacheKey(u), "", &Entry{Status: 0}))
	spy := &spyStore{Store: ms}
	resp, body := fetch(t, NewTransport(spy, WithLogger(slog.New(slog.DiscardHandler))).Client(), o.URL)
	assert.Equal(t, "fresh", body)
	assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "fwd=uri-miss")
	_, _, _, deletes := spy.counts()
	assert.Equal(t, 1, deletes)
	e, err := ms.Get(context.Background(), cacheKey(u), "")
	require.NoError(t, err)
	assert.Equal(t, 200, e.Status, "the fresh response replaced the corrupt entry")
}

// Point 11: the caller's cancellation reaches store calls.
func TestCancellationReachesTheStore(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"c"`, "x"))
	ctx, cancel := context.WithCancel(context.Background())
	spy := &spyStore{Store: NewMemoryStore(0), getHook: func(c context.Context) {
		cancel()
		<-c.Done() // a slow store that gives up when the caller does
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	tr := NewTransport(spy)
	_, err := tr.Client().Do(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, o.requests(), "the request went on after the caller gave up")
	assert.Zero(t, tr.Stats().StoreErrors)
}

// A store without HeaderUpdater gets a full Put after a 304 that changed
// headers, and no write at all when only Date moved.
func TestRevalidationWritesOnlyWhatChanged(t *testing.T) {
	var n atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		w.Header().Set("ETag", `"d"`)
		w.Header().Set("Date", fmt.Sprintf("Sun, 06 Nov 1994 08:49:%02d GMT", i))
		if i == 5 {
			w.Header().Set("X-Generation", "2")
		}
		if r.Header.Get("If-None-Match") != "" {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "dated")
	})
	spy := &spyStore{Store: NewMemoryStore(0)}
	c := NewTransport(putOnly{spy}).Client()
	for i := 0; i < 8; i++ {
		resp, body := fetch(t, c, o.URL)
		assert.Equal(t, "dated", body)
		assert.Equal(t, fmt.Sprintf("Sun, 06 Nov 1994 08:49:%02d GMT", i+1), resp.Header.Get("Date"), "the caller sees the 304's Date")
	}
	_, puts, updates, _ := spy.counts()
	assert.Equal(t, 2, puts, "one for the miss, one for the 304 that changed a header")
	assert.Zero(t, updates)
}

// Point 12: many goroutines polling, changing and invalidating; every body
// received is one the origin served under the ETag the caller sees.
func TestConcurrentPollingStress(t *testing.T) {
	const resources, workers, rounds = 8, 16, 150
	var versions [resources]atomic.Int64
	bodyOf := func(r int, v int64) string {
		return fmt.Sprintf("resource=%d version=%d|%s", r, v, strings.Repeat(strconv.Itoa(r), 100+int(v%50)))
	}
	etagOf := func(r int, v int64) string { return fmt.Sprintf(`"%d-%d"`, r, v) }
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		var id int
		fmt.Sscanf(r.URL.Path, "/res/%d", &id)
		if r.Method != http.MethodGet {
			versions[id].Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		v := versions[id].Load()
		w.Header().Set("ETag", etagOf(id, v))
		if r.Header.Get("If-None-Match") == etagOf(id, v) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, bodyOf(id, v))
	})
	tr := NewTransport(NewMemoryStore(32<<10), WithBase(&http.Transport{MaxIdleConnsPerHost: workers}))
	c := tr.Client()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				id := (w*7 + i) % resources
				u := fmt.Sprintf("%s/res/%d", o.URL, id)
				if i%17 == w%17 {
					resp, err := c.Post(u, "text/plain", nil)
					if err != nil {
						errs <- err
						return
					}
					resp.Body.Close()
					continue
				}
				resp, err := c.Get(u)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				var rid int
				var v int64
				if _, err := fmt.Sscanf(string(b), "resource=%d version=%d|", &rid, &v); err != nil || rid != id ||
					string(b) != bodyOf(rid, v) || resp.Header.Get("Etag") != etagOf(rid, v) {
					errs <- fmt.Errorf("resource %d: got %q with ETag %s", id, b, resp.Header.Get("Etag"))
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := tr.Stats()
	assert.Positive(t, st.Revalidated)
	assert.Positive(t, st.Changed)
	assert.Zero(t, st.StoreErrors)
}

// A revalidation allocates the same whatever the body size: the stored body
// is served as it is, never copied. (A base transport that answers 304 in
// memory keeps the network out of the count.)
func TestRevalidationAllocationsIndependentOfBodySize(t *testing.T) {
	allocs := allocsBySize(t, func(size int) *Transport {
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{"Etag": {`"big"`}}
			if r.Header.Get("If-None-Match") == `"big"` {
				return &http.Response{StatusCode: 304, Header: h, Body: http.NoBody, Request: r}, nil
			}
			return &http.Response{StatusCode: 200, Header: h, ContentLength: int64(size),
				Body: io.NopCloser(bytes.NewReader(make([]byte, size))), Request: r}, nil
		})
		return NewTransport(NewMemoryStore(64<<20), WithBase(base))
	}, func(resp *http.Response) bool { return resp.StatusCode == 200 })
	assert.Equal(t, allocs[1<<10], allocs[16<<20], "allocations grow with the body: %v", allocs)
	assert.Equal(t, allocs[1<<10], allocs[1<<20], "allocations grow with the body: %v", allocs)
	assert.LessOrEqual(t, allocs[1<<10], 20.0, "a revalidation allocates too much: %v", allocs)
	t.Logf("allocations per revalidation, transport and a 304 made in memory: %v", allocs)
}
