package etagcache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// streamingOrigin serves every GET as 4096 bytes and its version
// (max-age=60), and holds the answers of version 1 after their first 2048
// bytes until half is closed; a POST moves the version on.
func streamingOrigin(t *testing.T) (o *recordingOrigin, half chan struct{}) {
	var version atomic.Int32
	version.Store(1)
	half = make(chan struct{})
	o = newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			version.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		v := version.Load()
		body := strings.Repeat("x", 4096) + strconv.Itoa(int(v))
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body[:2048])
		w.(http.Flusher).Flush()
		if v == 1 {
			<-half
		}
		_, _ = io.WriteString(w, body[2048:])
	})
	return o, half
}

// A GET whose body is still streaming when the caller's POST to the same
// URL succeeds must not store its (pre-POST) answer afterwards: the next
// GET goes to the origin. In every store.
func TestInvalidationWinsOverStreamingGET(t *testing.T) {
	for name, newStore := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			o, half := streamingOrigin(t)
			tr := newStoreTransport(t, clk, newStore(), WithFreshness(true))
			resp, err := tr.Client().Get(o.URL + "/doc")
			require.NoError(t, err)
			_, err = io.ReadFull(resp.Body, make([]byte, 2048))
			require.NoError(t, err)

			post, err := tr.Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("new"))
			require.NoError(t, err)
			require.NoError(t, post.Body.Close())
			require.Equal(t, http.StatusNoContent, post.StatusCode)

			close(half)
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())

			resp, body := getBody(t, tr, o.URL+"/doc")
			assert.True(t, strings.HasSuffix(body, "2"), "the pre-POST body was stored after the POST")
			assert.Equal(t, ResultMiss, ResultOf(resp))
		})
	}
}

// A background refresh in flight when a POST succeeds does not store its
// answer: GET (stale, refresh held at the origin), POST, GET must not be
// the refresh's pre-POST answer. In every store.
func TestInvalidationWinsOverBackgroundRefresh(t *testing.T) {
	for name, newStore := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			o := newVersionedOrigin(t, clk, swr, "")
			tr := newStoreTransport(t, clk, newStore(), WithFreshness(true))
			getBody(t, tr, o.URL+"/doc")
			clk.Advance(20 * time.Second)
			o.set(func(o *versionedOrigin) {
				o.version["/doc"] = 2 // changed meanwhile: the refresh gets a 200
				o.gate, o.arrived = make(chan struct{}), make(chan string, 1)
			})
			resp, body := getBody(t, tr, o.URL+"/doc")
			require.Equal(t, "path=/doc v=1 lang=", body)
			require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
			<-o.arrived // the refresh has its (v2) answer

			post, err := tr.Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("new"))
			require.NoError(t, err)
			require.NoError(t, post.Body.Close())
			close(o.gate)
			tr.waitBackground()

			_, body = getBody(t, tr, o.URL+"/doc")
			assert.Equal(t, "path=/doc v=3 lang=", body, "the refresh's pre-POST answer outlived the POST")
		})
	}
}

// The invalidation table: a note taken before an invalidation sees it; one
// taken after does not; other keys are unaffected unless they share a
// bucket.
func TestInvalidations(t *testing.T) {
	var v invalidations
	before := v.now()
	v.mark("http://a.example/x")
	after := v.now()
	assert.True(t, v.since("http://a.example/x", before))
	assert.False(t, v.since("http://a.example/x", after))
	other := "http://a.example/y"
	assert.Equal(t, v.bucket(other) == v.bucket("http://a.example/x"), v.since(other, before))

	// A write that lands between the check and an invalidation is undone.
	ms := NewMemoryStore(0)
	tr := NewTransport(ms)
	note := tr.inval.now()
	key := "http://a.example/x"
	wrote, err := tr.guardedWrite(context.Background(), key, note, func() error {
		tr.invalidate(context.Background(), key, tr.now()) // the POST's, between check and write
		return ms.Put(context.Background(), key, "", &Entry{Status: 200, Header: http.Header{}})
	})
	require.NoError(t, err)
	assert.False(t, wrote)
	assert.Zero(t, ms.Len(), "the write that raced the invalidation was kept")
}

// sharedStores are two handles onto one store, as two processes (or two
// Transports of one process) sharing it have: the same MemoryStore, or two
// BoltStores on one file. flush writes what a handle has queued, so that
// the other sees it whatever the timing.
func sharedStores(t *testing.T) map[string]func() (a, b Store, flush func()) {
	return map[string]func() (Store, Store, func()){
		"memory": func() (Store, Store, func()) { s := NewMemoryStore(0); return s, s, func() {} },
		"bolt": func() (Store, Store, func()) {
			path := filepath.Join(t.TempDir(), "cache.db")
			open := func() *BoltStore {
				s, err := OpenBoltStore(path)
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			a, b := open(), open()
			return a, b, func() {
				for _, s := range []*BoltStore{a, b} {
					if err := s.commit(context.Background(), nil); !errors.Is(err, ErrNotFound) {
						require.NoError(t, err)
					}
				}
			}
		},
	}
}

// Worker A's GET is still streaming when worker B's POST to the same URL
// succeeds; A's pre-POST answer completes afterwards. The next GET, through
// either worker, must go to the origin. The workers share the store and
// (as machines with agreeing clocks do) a clock.
func TestInvalidationWinsOverAnotherTransportsStreamingGET(t *testing.T) {
	for name, stores := range sharedStores(t) {
		for _, next := range []string{"A", "B"} {
			t.Run(name+"/next through "+next, func(t *testing.T) {
				clk := newFakeClock()
				o, half := streamingOrigin(t)
				sa, sb, flush := stores()
				trs := map[string]*Transport{
					"A": newStoreTransport(t, clk, sa, WithFreshness(true)),
					"B": newStoreTransport(t, clk, sb, WithFreshness(true)),
				}
				resp, err := trs["A"].Client().Get(o.URL + "/doc")
				require.NoError(t, err)
				_, err = io.ReadFull(resp.Body, make([]byte, 2048))
				require.NoError(t, err)

				clk.Advance(time.Second)
				post, err := trs["B"].Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("new"))
				require.NoError(t, err)
				require.NoError(t, post.Body.Close())
				require.Equal(t, http.StatusNoContent, post.StatusCode)

				close(half)
				rest, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				require.True(t, strings.HasSuffix(string(rest), "1"), "A got the pre-POST body")
				flush()

				resp, body := getBody(t, trs[next], o.URL+"/doc")
				assert.True(t, strings.HasSuffix(body, "2"), "A's pre-POST body was stored after B's POST")
				assert.Equal(t, ResultMiss, ResultOf(resp))
			})
		}
	}
}

// Worker A's background refresh (stale-while-revalidate) is held at the
// origin, which read the resource's version when it arrived, while worker
// B's POST succeeds. The refresh's pre-POST answer must not be stored: the
// next GET, through either worker, is the POST's version.
func TestInvalidationWinsOverAnotherTransportsRefresh(t *testing.T) {
	for name, stores := range sharedStores(t) {
		for _, next := range []string{"A", "B"} {
			t.Run(name+"/next through "+next, func(t *testing.T) {
				clk := newFakeClock()
				o := newVersionedOrigin(t, clk, swr, "")
				sa, sb, flush := stores()
				trs := map[string]*Transport{
					"A": newStoreTransport(t, clk, sa, WithFreshness(true)),
					"B": newStoreTransport(t, clk, sb, WithFreshness(true)),
				}
				getBody(t, trs["A"], o.URL+"/doc")
				clk.Advance(20 * time.Second)
				o.set(func(o *versionedOrigin) {
					o.version["/doc"] = 2 // changed meanwhile: the refresh gets a 200
					o.gate, o.arrived = make(chan struct{}), make(chan string, 1)
				})
				resp, body := getBody(t, trs["A"], o.URL+"/doc")
				require.Equal(t, "path=/doc v=1 lang=", body)
				require.Contains(t, resp.Header.Get(HeaderCacheStatus), "stale-while-revalidate")
				<-o.arrived // the refresh has its (v2) answer

				clk.Advance(time.Second)
				post, err := trs["B"].Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("new"))
				require.NoError(t, err)
				require.NoError(t, post.Body.Close())
				close(o.gate)
				trs["A"].waitBackground()
				flush()

				resp, body = getBody(t, trs[next], o.URL+"/doc")
				assert.Equal(t, "path=/doc v=3 lang=", body, "A's refresh stored its pre-POST answer after B's POST")
				assert.Equal(t, ResultMiss, ResultOf(resp))
			})
		}
	}
}

// A Purge through one worker wins over another worker's GET still
// streaming: the purged body is not stored again.
func TestPurgeWinsOverAnotherTransportsStreamingGET(t *testing.T) {
	for name, stores := range sharedStores(t) {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			half := make(chan struct{})
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				body := strings.Repeat("secret ", 1024)
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				_, _ = io.WriteString(w, body[:2048])
				w.(http.Flusher).Flush()
				<-half
				_, _ = io.WriteString(w, body[2048:])
			})
			sa, sb, flush := stores()
			a, b := newStoreTransport(t, clk, sa, WithFreshness(true)), newStoreTransport(t, clk, sb, WithFreshness(true))
			resp, err := a.Client().Get(o.URL + "/doc")
			require.NoError(t, err)
			_, err = io.ReadFull(resp.Body, make([]byte, 2048))
			require.NoError(t, err)
			clk.Advance(time.Second)
			require.NoError(t, b.Purge(context.Background(), o.URL+"/doc"))
			close(half)
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			flush()

			for _, tr := range []*Transport{b, a} {
				req, err := http.NewRequest(http.MethodGet, o.URL+"/doc", nil)
				require.NoError(t, err)
				req.Header.Set("Cache-Control", "only-if-cached")
				resp, err := tr.RoundTrip(req)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, "the purged body was stored again")
			}
		})
	}
}

// A POST's own answer, stored under its URI in freshness mode (RFC 9110
// §9.3.3), is newer than the invalidation it made, however long the POST
// took: it is kept, in every store.
func TestPostAnswerOutlivesItsOwnInvalidation(t *testing.T) {
	for name, newStore := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Location", r.URL.Path)
				if r.Method == http.MethodPost {
					clk.Advance(time.Second) // the write takes its time
				}
				_, _ = io.WriteString(w, r.Method+" answer")
			})
			tr := newStoreTransport(t, clk, newStore(), WithFreshness(true))
			post, err := tr.Client().Post(o.URL+"/doc", "text/plain", strings.NewReader("x"))
			require.NoError(t, err)
			_, err = io.Copy(io.Discard, post.Body)
			require.NoError(t, err)
			require.NoError(t, post.Body.Close())
			resp, body := getBody(t, tr, o.URL+"/doc")
			assert.Equal(t, "POST answer", body)
			assert.Equal(t, ResultHit, ResultOf(resp))
		})
	}
}
