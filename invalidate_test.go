package etagcache

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A GET whose body is still streaming when the caller's POST to the same
// URL succeeds must not store its (pre-POST) answer afterwards: the next
// GET goes to the origin. In every store.
func TestInvalidationWinsOverStreamingGET(t *testing.T) {
	for name, newStore := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			clk := newFakeClock()
			var version atomic.Int32
			version.Store(1)
			half := make(chan struct{})
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					version.Add(1)
					w.WriteHeader(http.StatusNoContent)
					return
				}
				v := version.Load()
				body := "v" + strings.Repeat("x", 4096) + string(rune('0'+v))
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Length", "4098")
				_, _ = io.WriteString(w, body[:2048])
				w.(http.Flusher).Flush()
				if v == 1 {
					<-half
				}
				_, _ = io.WriteString(w, body[2048:])
			})
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
