package etagcache

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const cachedOnlyLM = "Sun, 06 Nov 1994 08:49:37 GMT"

// cachedOnlyOrigin serves "doc", fresh for a minute, with an ETag and a
// Last-Modified, and answers 304 to a matching If-None-Match.
func cachedOnlyOrigin(t *testing.T) *recordingOrigin {
	return newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Last-Modified", cachedOnlyLM)
		etagHandler(`"v1"`, "doc")(w, r)
	})
}

// send makes a request with the given context and header pairs straight
// through tr, and returns its response and whole body.
func send(t *testing.T, tr *Transport, ctx context.Context, method, url string, body io.Reader, kv ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(b)
}

// OnlyIfCached, and a request's only-if-cached in freshness mode, never
// reach the origin, whatever the request (RFC 9111 §5.2.1.7): a usable
// stored response answers it, or the cache's 504.
func TestOnlyIfCachedNeverReachesTheOrigin(t *testing.T) {
	bg := context.Background()
	type mode struct {
		name string
		opts []Option
		ctx  context.Context
		kv   []string // what asks for only-if-cached
	}
	for _, m := range []mode{
		{"default/context", nil, OnlyIfCached(bg), nil},
		{"freshness/context", []Option{WithFreshness(true)}, OnlyIfCached(bg), nil},
		{"freshness/directive", []Option{WithFreshness(true)}, bg, []string{"Cache-Control", "only-if-cached"}},
	} {
		t.Run(m.name, func(t *testing.T) {
			o := cachedOnlyOrigin(t)
			clk := newFakeClock()
			tr := newFreshTransport(t, clk, m.opts...)
			req := func(method string, body io.Reader, kv ...string) (*http.Response, string) {
				t.Helper()
				if m.kv != nil {
					cc := m.kv[1]
					for i := 0; i+1 < len(kv); i += 2 {
						if kv[i] == "Cache-Control" {
							kv[i+1], cc = kv[i+1]+", "+cc, ""
						}
					}
					if cc != "" {
						kv = append(kv, "Cache-Control", cc)
					}
				}
				return send(t, tr, m.ctx, method, o.URL, body, kv...)
			}
			timeout := func(what string, resp *http.Response) {
				t.Helper()
				assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, what)
				assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=only-if-cached", what)
			}

			// Nothing stored.
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPost, http.MethodDelete} {
				resp, _ := req(method, nil)
				timeout(method+" with nothing stored", resp)
			}
			resp, _ := req(http.MethodGet, nil, "If-None-Match", `"v1"`)
			timeout("a precondition with nothing stored", resp)
			resp, _ = req(http.MethodGet, nil, "Range", "bytes=0-1")
			timeout("a range with nothing stored", resp)
			require.Empty(t, o.requests(), "only-if-cached reached the origin")

			getBody(t, tr, o.URL) // stores the response, fresh for a minute
			n := len(o.requests())

			resp, body := req(http.MethodHead, nil)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "HEAD from the stored GET response")
			assert.Empty(t, body)
			assert.Equal(t, "3", resp.Header.Get("Content-Length"), "RFC 9110 §9.3.2: the GET's header")
			assert.Equal(t, `"v1"`, resp.Header.Get("Etag"))
			assert.Equal(t, ResultHit, ResultOf(resp))

			resp, body = req(http.MethodGet, nil, "If-None-Match", `"v0", W/"v1"`)
			assert.Equal(t, http.StatusNotModified, resp.StatusCode, "the caller's own If-None-Match matches")
			assert.Empty(t, body)
			assert.Equal(t, `"v1"`, resp.Header.Get("Etag"))
			assert.Empty(t, resp.Header.Get("Content-Length"))
			resp, _ = req(http.MethodGet, nil, "If-None-Match", "*")
			assert.Equal(t, http.StatusNotModified, resp.StatusCode, "*")
			resp, body = req(http.MethodGet, nil, "If-None-Match", `"v2"`)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "another tag: the stored response")
			assert.Equal(t, "doc", body)
			resp, _ = req(http.MethodHead, nil, "If-None-Match", `"v1"`)
			assert.Equal(t, http.StatusNotModified, resp.StatusCode, "HEAD")
			resp, _ = req(http.MethodGet, nil, "If-Modified-Since", cachedOnlyLM)
			assert.Equal(t, http.StatusNotModified, resp.StatusCode, "not modified since")
			resp, body = req(http.MethodGet, nil, "If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT")
			assert.Equal(t, http.StatusOK, resp.StatusCode, "modified since")
			assert.Equal(t, "doc", body)
			resp, _ = req(http.MethodGet, nil, "If-Match", `"v1"`)
			timeout("If-Match is for the origin to evaluate", resp)
			resp, _ = req(http.MethodGet, nil, "If-Unmodified-Since", cachedOnlyLM)
			timeout("If-Unmodified-Since is for the origin to evaluate", resp)

			resp, body = req(http.MethodGet, nil, "Range", "bytes=1-")
			assert.Equal(t, http.StatusPartialContent, resp.StatusCode, "a range of the stored response")
			assert.Equal(t, "oc", body)
			resp, body = req(http.MethodGet, nil, "Cache-Control", "no-store")
			assert.Equal(t, http.StatusOK, resp.StatusCode, "no-store may be answered from the store")
			assert.Equal(t, "doc", body)
			resp, _ = req(http.MethodGet, strings.NewReader("body"))
			timeout("a GET with a body", resp)
			resp, _ = send(t, tr, WithoutStore(OnlyIfCached(bg)), http.MethodGet, o.URL, nil)
			timeout("WithoutStore", resp)
			resp, _ = send(t, tr, WithRefresh(OnlyIfCached(bg)), http.MethodGet, o.URL, nil)
			timeout("WithRefresh", resp)
			for _, method := range []string{http.MethodOptions, http.MethodPost, http.MethodPut} {
				resp, _ := req(method, nil)
				timeout(method, resp)
			}

			clk.Advance(time.Hour) // stale
			resp, _ = req(http.MethodHead, nil)
			timeout("HEAD with a stale response", resp)
			resp, _ = req(http.MethodGet, nil, "If-None-Match", `"v1"`)
			timeout("a precondition with a stale response", resp)
			resp, _ = req(http.MethodGet, nil, "Range", "bytes=1-")
			timeout("a range with a stale response", resp)
			assert.Len(t, o.requests(), n, "only-if-cached reached the origin")
		})
	}
}

// Without only-if-cached, HEAD and a caller's own preconditions still go to
// the origin as they always did.
func TestHeadAndPreconditionsStillReachTheOrigin(t *testing.T) {
	o := cachedOnlyOrigin(t)
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	getBody(t, tr, o.URL)
	resp, _ := send(t, tr, context.Background(), http.MethodHead, o.URL, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = send(t, tr, context.Background(), http.MethodGet, o.URL, nil, "If-None-Match", `"v1"`)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Equal(t, ResultBypass, ResultOf(resp))
	assert.Len(t, o.requests(), 3)
}
