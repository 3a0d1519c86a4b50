package etagcache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// recordingOrigin is an httptest origin that remembers the header of every
// request it received.
type recordingOrigin struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
	meth []string
}

func newRecordingOrigin(t testing.TB, h http.HandlerFunc) *recordingOrigin {
	t.Helper()
	o := &recordingOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Header.Clone())
		o.meth = append(o.meth, r.Method)
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// requests returns the headers the origin has received so far.
func (o *recordingOrigin) requests() []http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]http.Header(nil), o.seen...)
}

func (o *recordingOrigin) last() http.Header {
	r := o.requests()
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1]
}

// etagHandler serves body with the given ETag and answers 304 to a
// matching If-None-Match.
func etagHandler(etag, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		if weakMatch(r.Header.Get("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, body)
	}
}

// fetch GETs url through c with optional header pairs, reads the whole body
// and returns the response and body.
func fetch(t testing.TB, c *http.Client, url string, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(b)
}

// spyStore wraps a Store and counts the calls made to it.
type spyStore struct {
	Store
	mu                           sync.Mutex
	gets, puts, updates, deletes int
	putEntries                   []*Entry
	failGet, failPut, failDelete error
	getHook                      func(ctx context.Context)
}

func (s *spyStore) Get(ctx context.Context, key, variant string) (*Entry, error) {
	s.mu.Lock()
	s.gets++
	hook, fail := s.getHook, s.failGet
	s.mu.Unlock()
	if hook != nil {
		hook(ctx)
	}
	if fail != nil {
		return nil, fail
	}
	return s.Store.Get(ctx, key, variant)
}

func (s *spyStore) Put(ctx context.Context, key, variant string, e *Entry) error {
	s.mu.Lock()
	s.puts++
	s.putEntries = append(s.putEntries, e)
	fail := s.failPut
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.Store.Put(ctx, key, variant, e)
}

func (s *spyStore) UpdateHeader(ctx context.Context, key, variant string, e *Entry) error {
	s.mu.Lock()
	s.updates++
	s.mu.Unlock()
	return s.Store.(HeaderUpdater).UpdateHeader(ctx, key, variant, e)
}

func (s *spyStore) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	s.deletes++
	fail := s.failDelete
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.Store.Delete(ctx, key)
}

func (s *spyStore) counts() (gets, puts, updates, deletes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets, s.puts, s.updates, s.deletes
}

// putOnly hides a store's HeaderUpdater.
type putOnly struct{ Store }

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type closeSpy struct {
	io.Reader
	closed *atomic.Bool
}

func (c *closeSpy) Close() error { c.closed.Store(true); return nil }

// allocsBySize counts, for bodies of 1 KiB, 1 MiB and 16 MiB, the
// allocations of a GET through the Transport that newTransport makes for
// that size, after a first GET that stores the body. Each counted response
// must carry the whole body and satisfy want.
func allocsBySize(t *testing.T, newTransport func(size int) *Transport, want func(*http.Response) bool) map[int]float64 {
	t.Helper()
	allocs := map[int]float64{}
	for _, size := range []int{1 << 10, 1 << 20, 16 << 20} {
		tr := newTransport(size)
		req := httptest.NewRequest(http.MethodGet, "http://example.test/doc", nil)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		allocs[size] = testing.AllocsPerRun(200, func() {
			resp, err := tr.RoundTrip(req)
			if err != nil || !want(resp) || resp.ContentLength != int64(size) {
				t.Fatalf("not the response measured (size %d): %v", size, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		})
	}
	return allocs
}
