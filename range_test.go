package etagcache

import (
	"context"
	"io"
	"math"
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

// rangeOrigin serves content (which a test may change) through
// http.ServeContent, fresh for ten minutes, under etag, and records the
// Range of every request it receives ("" for none).
type rangeOrigin struct {
	*httptest.Server
	mu            sync.Mutex
	content, etag string
	ranges        []string
}

func newRangeOrigin(t *testing.T, content, etag string) *rangeOrigin {
	o := &rangeOrigin{content: content, etag: etag}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.ranges = append(o.ranges, r.Header.Get("Range"))
		content, etag := o.content, o.etag
		o.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(content))
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *rangeOrigin) seen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.ranges...)
}

// RFC 9111 §3.4: a stored 206 that holds the whole representation is a
// complete response, and a GET without Range is answered from it; a range
// the cache made up is never answered to a caller that asked for none.
func TestWholePartialAnswersAPlainGet(t *testing.T) {
	content := strings.Repeat("0123456789", 10)
	o := newRangeOrigin(t, content, `"strong"`)
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))

	resp, body := getBody(t, tr, o.URL, "Range", "bytes=0-") // what media players send first
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, content, body)

	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, content, body)
	assert.Empty(t, resp.Header.Get("Content-Range"))
	assert.Equal(t, "100", resp.Header.Get("Content-Length"))
	assert.Equal(t, ResultHit, ResultOf(resp), "the whole representation is stored")
	assert.Equal(t, []string{"bytes=0-"}, o.seen(), "nothing more was asked of the origin")

	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, content, body)
	assert.Equal(t, ResultHit, ResultOf(resp))
}

// A weakly tagged representation that shrank since its start was stored:
// the request for the rest is not satisfiable, and the caller, who asked
// for no range, gets the whole new representation instead of the 416.
func TestCompletionOfAShrunkRepresentationFetchesInFull(t *testing.T) {
	o := newRangeOrigin(t, strings.Repeat("a", 100), `W/"weak"`)
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	resp, _ := getBody(t, tr, o.URL, "Range", "bytes=0-49")
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)

	o.mu.Lock()
	o.content = strings.Repeat("b", 40)
	o.mu.Unlock()
	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, strings.Repeat("b", 40), body)
	assert.Equal(t, []string{"bytes=0-49", "bytes=50-", ""}, o.seen(), "after the 416, one plain GET")
	resp, body = getBody(t, tr, o.URL)
	assert.Equal(t, strings.Repeat("b", 40), body)
	assert.Equal(t, ResultHit, ResultOf(resp), "the full response was stored")
}

// The completion streams: nothing is allocated for the length the stored
// Content-Range announces, only for the bytes that arrive, and the caller
// reads the stored part while the origin is still sending the rest.
func TestCompletionGrowsWithTheBytesThatArrive(t *testing.T) {
	const total = 16 << 20
	release := make(chan struct{})
	var mu sync.Mutex
	var ranges []string
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"big"`)
		w.Header().Set("Content-Length", "10")
		if r.Header.Get("Range") == "bytes=0-9" {
			w.Header().Set("Content-Range", "bytes 0-9/"+strconv.Itoa(total))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, strings.Repeat("x", 10))
			return
		}
		w.Header().Set("Content-Range", "bytes 10-"+strconv.Itoa(total-1)+"/"+strconv.Itoa(total))
		w.Header().Set("Content-Length", strconv.Itoa(total-10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, strings.Repeat("y", 1024))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, strings.Repeat("y", total-10-1024))
	}))
	defer o.Close()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	getBody(t, tr, o.URL, "Range", "bytes=0-9")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // bounds a failure only
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
	require.NoError(t, err)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err, "the response comes before the rest of the body")
	head := make([]byte, 10+1024)
	_, err = io.ReadFull(resp.Body, head)
	require.NoError(t, err)
	runtime.ReadMemStats(&after)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(4<<20), "allocated for the announced length")
	assert.Equal(t, strings.Repeat("x", 10)+strings.Repeat("y", 1024), string(head))
	assert.Equal(t, int64(total), resp.ContentLength)

	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, total-10-1024, len(rest))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, ResultHit, ResultOf(resp), "the combined response was stored")
	assert.Equal(t, total, len(body))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"bytes=0-9", "bytes=10-"}, ranges)
}

// No Content-Range total, however large, makes RoundTrip panic, even with
// no limit on the size of an entry.
func TestCompletionOfAHugeTotal(t *testing.T) {
	huge := strconv.FormatInt(math.MaxInt64, 10)
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"huge"`)
		if r.Header.Get("Range") == "bytes=0-9" {
			w.Header().Set("Content-Range", "bytes 0-9/"+huge)
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = io.WriteString(w, strings.Repeat("x", 10))
			return
		}
		w.Header().Set("Content-Range", "bytes 10-"+strconv.FormatInt(math.MaxInt64-1, 10)+"/"+huge)
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "short")
		w.(http.Flusher).Flush() // chunked, without a length; then the body ends
	}))
	defer o.Close()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true), WithMaxEntrySize(-1))
	getBody(t, tr, o.URL, "Range", "bytes=0-9")

	req, err := http.NewRequest(http.MethodGet, o.URL, nil)
	require.NoError(t, err)
	require.NotPanics(t, func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return
		}
		_, err = io.ReadAll(resp.Body)
		assert.Error(t, err, "a body shorter than its Content-Range says is not whole")
		_ = resp.Body.Close()
	})
	resp, _ := getBody(t, tr, o.URL, "Range", "bytes=0-9")
	assert.Equal(t, ResultHit, ResultOf(resp), "the stored part is still there")
}

// Credentials added below the cache: the answer to the request for the rest
// is alice's, and it is neither stored nor combined with the stored part of
// the anonymous partition. getRange does not store such a 206 either.
func TestCompletionWithCredentialsAddedBelowTheCache(t *testing.T) {
	for _, mode := range []string{"200", "206"} {
		t.Run(mode, func(t *testing.T) {
			doc := func(r *http.Request) string {
				if r.Header.Get("Authorization") != "" {
					return "alice's private document"
				}
				return "the public document here"
			}
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=600")
				w.Header().Set("ETag", `"rev1"`) // one tag for everyone: it names a revision
				if mode == "200" && r.Header.Get("Authorization") != "" {
					_, _ = io.WriteString(w, doc(r)) // ignores Range
					return
				}
				http.ServeContent(w, r, "", time.Time{}, strings.NewReader(doc(r)))
			})
			ms := NewMemoryStore(0)
			anon := NewTransport(ms, WithFreshness(true), WithBase(http.DefaultTransport))
			resp, body := get(t, anon.Client(), o.URL, http.Header{"Range": {"bytes=0-3"}})
			require.Equal(t, http.StatusPartialContent, resp.StatusCode)
			require.Equal(t, "the ", body)

			var user atomic.Value
			user.Store("alice")
			below := NewTransport(ms, WithFreshness(true), WithBase(authBelow{&user, http.DefaultTransport}))
			resp, body = get(t, below.Client(), o.URL, nil)
			if mode == "200" {
				assert.Equal(t, "alice's private document", body)
			}
			assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=credentials-below-cache")

			resp, body = get(t, anon.Client(), o.URL, nil)
			assert.Equal(t, "the public document here", body, "alice's document reached the anonymous partition")
			assert.NotContains(t, body, "alice")

			ms2 := NewMemoryStore(0)
			below2 := NewTransport(ms2, WithFreshness(true), WithBase(authBelow{&user, http.DefaultTransport}))
			anon2 := NewTransport(ms2, WithFreshness(true), WithBase(http.DefaultTransport))
			_, body = get(t, below2.Client(), o.URL, http.Header{"Range": {"bytes=0-6"}})
			assert.Contains(t, []string{"alice's", "alice's private document"}, body)
			_, body = get(t, anon2.Client(), o.URL, http.Header{"Range": {"bytes=0-6"}})
			assert.Equal(t, "the pub", body, "a response for credentials the cache cannot see was stored")
		})
	}
}

// Under a partition hook, a stored 206 whose Vary names a credential is
// found again with another token, as a complete response is.
func TestPartialUnderPartitionHookWithVaryNamingCredentials(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Vary", "Authorization")
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader("0123456789"))
	})
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true),
		WithPartition(func(*http.Request) string { return "installation-1" }))
	resp, _ := get(t, tr.Client(), o.URL, http.Header{"Range": {"bytes=0-4"}, "Authorization": {"token t1"}})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	resp, body := get(t, tr.Client(), o.URL, http.Header{"Range": {"bytes=1-2"}, "Authorization": {"token t2"}})
	assert.Equal(t, "12", body)
	assert.Equal(t, ResultHit, ResultOf(resp), "the stored part was a variant miss for another token")
	assert.Len(t, o.requests(), 1)
}
