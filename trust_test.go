package etagcache

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// revisionOrigin answers with one ETag for everyone (it names a revision,
// as many APIs' tags do) and a body that depends on who asks: the user from
// the Authorization field, or from the Host field, or the request target.
func revisionOrigin(t *testing.T, who func(*http.Request) string) *recordingOrigin {
	return newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"rev1"`)
		if r.Header.Get("If-None-Match") == `"rev1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "body for %s", who(r))
	})
}

func byAuthorization(r *http.Request) string { return r.Header.Get("Authorization") }

// get sends a GET with exactly the header map given (keys as they are).
func get(t *testing.T, c *http.Client, u string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	if h != nil {
		req.Header = h
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(b)
}

// Fields the cache depends on are read whatever their key's case.
func TestNonCanonicalHeaderKeys(t *testing.T) {
	t.Run("credentials", func(t *testing.T) {
		o := revisionOrigin(t, byAuthorization)
		c := NewTransport(NewMemoryStore(0)).Client()
		_, body := get(t, c, o.URL, http.Header{"authorization": {"alice"}})
		require.Equal(t, "body for alice", body)
		for i := 0; i < 2; i++ {
			_, body = get(t, c, o.URL, http.Header{"authorization": {"bob"}})
			assert.Equal(t, "body for bob", body, "bob was served alice's body")
			_, body = get(t, c, o.URL, http.Header{"AUTHORIZATION": {"alice"}})
			assert.Equal(t, "body for alice", body)
		}
		_, body = get(t, c, o.URL, nil)
		assert.Equal(t, "body for ", body, "an anonymous request was served a user's body")
	})
	t.Run("caller's own if-none-match passes through", func(t *testing.T) {
		o := newRecordingOrigin(t, etagHandler(`"v1"`, "hello"))
		c := NewTransport(NewMemoryStore(0)).Client()
		_, _ = get(t, c, o.URL, nil) // stored
		resp, body := get(t, c, o.URL, http.Header{"if-none-match": {`"v1"`}})
		assert.Equal(t, http.StatusNotModified, resp.StatusCode, "the caller asked for a 304")
		assert.Empty(t, body)
		assert.Equal(t, ResultBypass, ResultOf(resp))
		assert.Len(t, o.last().Values("If-None-Match"), 1, "two If-None-Match fields were sent")
	})
	t.Run("cache-control no-store", func(t *testing.T) {
		o := newRecordingOrigin(t, etagHandler(`"v1"`, "hello"))
		ms := NewMemoryStore(0)
		c := NewTransport(ms).Client()
		_, _ = get(t, c, o.URL, http.Header{"cache-control": {"no-store"}})
		assert.Zero(t, ms.Len())
	})
	t.Run("vary-named fields", func(t *testing.T) {
		o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Vary", "Accept-Language")
			etagHandler(`"same"`, "lang "+r.Header.Get("Accept-Language"))(w, r)
		})
		c := NewTransport(NewMemoryStore(0)).Client()
		_, body := get(t, c, o.URL, http.Header{"accept-language": {"fr"}})
		require.Equal(t, "lang fr", body)
		_, body = get(t, c, o.URL, http.Header{"accept-language": {"de"}})
		assert.Equal(t, "lang de", body)
	})
}

// The key names the request target that is really sent.
func TestHostAndOpaqueArePartOfTheKey(t *testing.T) {
	t.Run("Host", func(t *testing.T) {
		o := revisionOrigin(t, func(r *http.Request) string { return r.Host })
		c := NewTransport(NewMemoryStore(0)).Client()
		for i := 0; i < 2; i++ {
			for _, host := range []string{"site-a.example", "site-b.example"} {
				req, err := http.NewRequest(http.MethodGet, o.URL+"/index", nil)
				require.NoError(t, err)
				req.Host = host
				resp, err := c.Do(req)
				require.NoError(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.Equal(t, "body for "+host, string(b))
			}
		}
	})
	t.Run("Opaque", func(t *testing.T) {
		o := revisionOrigin(t, func(r *http.Request) string { return r.RequestURI })
		c := NewTransport(NewMemoryStore(0)).Client()
		_, body := get(t, c, o.URL+"/files/a/secret", nil)
		require.Equal(t, "body for /files/a/secret", body)
		req, err := http.NewRequest(http.MethodGet, o.URL+"/files/a/secret", nil)
		require.NoError(t, err)
		req.URL.Opaque = "/files/b%2Fpublic"
		resp, err := c.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, "body for /files/b%2Fpublic", string(b))
	})
	t.Run("keys", func(t *testing.T) {
		u, _ := url.Parse("http://10.0.0.1:80/a?q=1")
		req := &http.Request{URL: u, Host: "Site.Example:80"}
		assert.Equal(t, "http://site.example/a?q=1", requestKey(req))
		u2 := *u
		u2.Opaque = "//Other.Example/b%2Fc"
		assert.Equal(t, "http://other.example/b%2Fc?q=1", requestKey(&http.Request{URL: &u2}))
	})
}

// authBelow is a base transport that authenticates by itself, as
// oauth2.Transport does: it clones the request and adds a credential.
type authBelow struct {
	user *atomic.Value
	base http.RoundTripper
}

func (a authBelow) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", a.user.Load().(string))
	return a.base.RoundTrip(r2)
}

// Credentials added below the cache are noticed: nothing is stored
// or merged, one warning is logged, and Cache-Status says why.
func TestCredentialsAddedBelowTheCache(t *testing.T) {
	o := revisionOrigin(t, byAuthorization)
	var user atomic.Value
	var logs bytes.Buffer
	ms := NewMemoryStore(0)
	tr := NewTransport(ms, WithBase(authBelow{&user, http.DefaultTransport}),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	c := tr.Client()
	for i := 0; i < 18; i++ {
		u := []string{"alice", "bob", "carol"}[i%3]
		user.Store(u)
		resp, body := get(t, c, o.URL, nil)
		require.Equal(t, "body for "+u, body, "request %d", i)
		assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=credentials-below-cache")
	}
	assert.Zero(t, ms.Len(), "a response to credentials the cache cannot see was stored")
	assert.Equal(t, 1, strings.Count(logs.String(), "adds credentials"), logs.String())
	assert.Contains(t, logs.String(), "WithPartition")
	assert.Contains(t, logs.String(), "above the cache")

	// An entry stored before (say by an earlier version) is never merged
	// with a 304 that such a base obtained.
	tr2 := NewTransport(ms, WithBase(http.DefaultTransport))
	user.Store("alice")
	_, body := get(t, tr2.Client(), o.URL, http.Header{"Authorization": {"alice"}})
	require.Equal(t, "body for alice", body)
	entry := *mustGet(t, ms, o.URL)
	require.NoError(t, ms.Put(context.Background(), cacheKey(mustURL(t, o.URL)), "", &entry))
	user.Store("bob")
	_, body = get(t, c, o.URL, nil)
	assert.Equal(t, "body for bob", body)

	// With a partition hook the user has said who is asking: it caches.
	hooked := NewTransport(NewMemoryStore(0), WithBase(authBelow{&user, http.DefaultTransport}),
		WithPartition(func(*http.Request) string { return user.Load().(string) }))
	for i := 0; i < 6; i++ {
		u := []string{"alice", "bob"}[i%2]
		user.Store(u)
		resp, body := get(t, hooked.Client(), o.URL, nil)
		require.Equal(t, "body for "+u, body)
		if i >= 2 {
			assert.Equal(t, ResultRevalidated, ResultOf(resp))
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

// mustGet returns the entry some partition holds for u (the memory store is
// searched directly).
func mustGet(t *testing.T, ms *MemoryStore, u string) *Entry {
	t.Helper()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, el := range ms.items[cacheKey(mustURL(t, u))] {
		return el.Value.(*memItem).entry
	}
	t.Fatalf("nothing stored for %s", u)
	return nil
}

// The partition hook keeps the cache warm across token rotation,
// and no value it returns is stored in clear.
func TestPartitionHookSurvivesTokenRotation(t *testing.T) {
	o := revisionOrigin(t, func(r *http.Request) string { return r.Header.Get("X-User") })
	spy := &spyStore{Store: NewMemoryStore(0)}
	tr := NewTransport(spy, WithPartition(func(r *http.Request) string { return r.Header.Get("X-User") }))
	c := tr.Client()
	for i := 0; i < 6; i++ {
		for _, u := range []string{"installation-17", "installation-42"} {
			resp, body := get(t, c, o.URL, http.Header{"Authorization": {fmt.Sprintf("token %s-%d", u, i)}, "X-User": {u}})
			require.Equal(t, "body for "+u, body)
			if i > 0 {
				assert.Equal(t, ResultRevalidated, ResultOf(resp), "rotation %d of %s made the cache cold", i, u)
			}
		}
	}
	_, puts, _, _ := spy.counts()
	assert.Equal(t, 2, puts)
	for _, e := range spy.putEntries {
		enc := string(EncodeEntryMeta(e)) // the body is the origin's to name users in
		assert.NotContains(t, enc, "installation-")
		assert.NotContains(t, enc, "token ")
	}
}

// A 304 whose Last-Modified differs from the stored one confirms
// nothing: after a rollback to an older file the older body is served.
func TestRolledBackFileIsNotConfirmedByA304(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.txt")
	older, newer := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	write := func(body string, mtime time.Time) {
		require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
		require.NoError(t, os.Chtimes(path, mtime, mtime))
	}
	o := newRecordingOrigin(t, http.FileServer(http.Dir(dir)).ServeHTTP)
	c := NewTransport(NewMemoryStore(0)).Client()

	write("version 2, the newer one", newer)
	_, body := get(t, c, o.URL+"/f.txt", nil)
	require.Equal(t, "version 2, the newer one", body)
	write("version 1", older) // rolled back
	for i := 0; i < 3; i++ {
		resp, body := get(t, c, o.URL+"/f.txt", nil)
		assert.Equal(t, "version 1", body, "poll %d: the newer body was served after a rollback", i)
		if i == 0 {
			assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=last-modified-mismatch")
		}
	}
}

// gzipOrigin imitates nginx with gzip on and gzip_vary off: it compresses
// for callers that accept gzip, weakens the ETag when it does, sends no
// Vary, and answers a matching If-None-Match with the strong tag.
func gzipOrigin(t *testing.T, content string) *recordingOrigin {
	return newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if weakMatch(r.Header.Get("If-None-Match"), `"n1"`) {
			w.Header().Set("ETag", `"n1"`)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("ETag", `W/"n1"`)
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, content)
			_ = zw.Close()
			return
		}
		w.Header().Set("ETag", `"n1"`)
		_, _ = io.WriteString(w, content)
	})
}

func gunzip(t *testing.T, s string) string {
	t.Helper()
	zr, err := gzip.NewReader(strings.NewReader(s))
	require.NoError(t, err, "not gzip")
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return string(b)
}

// A stored content-coded body never reaches a caller that did not
// accept the coding, and nginx's strong 304 for a gzipped entry is refused.
func TestTransparentGzipCallersGetDecodedBodies(t *testing.T) {
	const content = "some text that nginx would compress for us"
	callers := map[string]http.Header{
		"explicit gzip": {"Accept-Encoding": {"gzip"}},
		"go default":    nil, // net/http adds gzip below the cache and decodes
		"identity":      {"Accept-Encoding": {"identity"}},
	}
	orders := [][]string{
		{"explicit gzip", "go default", "identity", "explicit gzip", "go default", "identity"},
		{"go default", "explicit gzip", "go default", "identity", "explicit gzip", "identity"},
		{"identity", "explicit gzip", "identity", "go default", "go default", "explicit gzip"},
	}
	for _, order := range orders {
		t.Run(strings.Join(order, ","), func(t *testing.T) {
			o := gzipOrigin(t, content)
			c := NewTransport(NewMemoryStore(0)).Client()
			for i, name := range order {
				var h http.Header
				if callers[name] != nil {
					h = callers[name].Clone()
				}
				resp, body := get(t, c, o.URL, h)
				if name == "explicit gzip" && resp.Header.Get("Content-Encoding") == "gzip" {
					body = gunzip(t, body)
				} else {
					assert.Empty(t, resp.Header.Get("Content-Encoding"), "%d %s", i, name)
				}
				assert.Equal(t, content, body, "%d %s", i, name)
			}
		})
	}
	t.Run("nginx's strong 304 does not confirm a gzipped entry", func(t *testing.T) {
		o := gzipOrigin(t, content)
		c := NewTransport(NewMemoryStore(0)).Client()
		h := http.Header{"Accept-Encoding": {"gzip"}}
		_, _ = get(t, c, o.URL, h.Clone())
		resp, body := get(t, c, o.URL, h.Clone())
		assert.Equal(t, content, gunzip(t, body))
		assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=coded-etag-mismatch")
		// Such a body is not stored again for this resource, so later polls
		// cost one plain request each, not a refused 304 and a refetch.
		before := len(o.requests())
		for i := 0; i < 3; i++ {
			_, body = get(t, c, o.URL, h.Clone())
			assert.Equal(t, content, gunzip(t, body))
		}
		assert.Equal(t, before+3, len(o.requests()))
		// A decoded entry (net/http's transparent gzip) accepts it: GitHub's case.
		_, _ = get(t, c, o.URL, nil)
		resp, body = get(t, c, o.URL, nil)
		assert.Equal(t, content, body)
		assert.Equal(t, ResultRevalidated, ResultOf(resp))
	})
}

func TestAcceptsCoding(t *testing.T) {
	gz := http.Header{"Content-Encoding": {"gzip"}}
	tests := []struct {
		accept []string
		stored http.Header
		want   bool
	}{
		{nil, http.Header{}, true},
		{nil, gz, false},
		{[]string{"gzip"}, gz, true},
		{[]string{"GZIP;q=0.5"}, gz, true},
		{[]string{"gzip;q=0"}, gz, false},
		{[]string{"br", "deflate"}, gz, false},
		{[]string{"*"}, gz, true},
		{[]string{"*;q=0, identity"}, gz, false},
		{[]string{"x-gzip"}, gz, true},
		{[]string{"gzip"}, http.Header{"Content-Encoding": {"gzip, br"}}, false},
		{[]string{"identity"}, http.Header{"Content-Encoding": {"identity"}}, true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, acceptsCoding(http.Header{"Accept-Encoding": tt.accept}, tt.stored), "%v %v", tt.accept, tt.stored)
	}
}

// A 304 with Vary: * makes the entry unusable: it is dropped.
func TestNotModifiedWithVaryStarDropsTheEntry(t *testing.T) {
	var star atomic.Bool
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if star.Load() {
			w.Header().Set("Vary", "*")
		}
		etagHandler(`"v1"`, "hello")(w, r)
	})
	ms := NewMemoryStore(0)
	c := NewTransport(ms).Client()
	_, _ = get(t, c, o.URL, nil)
	require.Equal(t, 1, ms.Len())
	star.Store(true)
	resp, body := get(t, c, o.URL, nil)
	assert.Equal(t, "hello", body)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Zero(t, ms.Len(), "an entry that a 304 with Vary: * made unusable was kept")
	assert.Empty(t, o.last().Get("If-None-Match"), "the body came from a revalidation it cannot trust")
}

// The 304's Set-Cookie reaches the caller and is never stored; the
// first 200's Age and Cache-Status are not replayed after a 304.
func TestNotModifiedFieldsOfThisExchange(t *testing.T) {
	var n atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		http.SetCookie(w, &http.Cookie{Name: "session", Value: fmt.Sprint("s", i)})
		if i == 1 {
			w.Header().Set("Age", "100")
			w.Header().Set("Cache-Status", "OldCDN; hit")
		}
		etagHandler(`"v1"`, "hello")(w, r)
	})
	spy := &spyStore{Store: NewMemoryStore(0)}
	c := NewTransport(spy).Client()
	_, _ = get(t, c, o.URL, nil)
	for i := 2; i <= 4; i++ {
		resp, body := get(t, c, o.URL, nil)
		require.Equal(t, "hello", body)
		require.Equal(t, ResultRevalidated, ResultOf(resp))
		cookies := resp.Cookies()
		require.Len(t, cookies, 1, "poll %d lost the 304's Set-Cookie", i)
		assert.Equal(t, fmt.Sprint("s", i), cookies[0].Value)
		assert.Empty(t, resp.Header.Get("Age"), "the first 200's Age was replayed")
		assert.Equal(t, "etagcache; fwd=stale; fwd-status=304", resp.Header.Get(HeaderCacheStatus))
	}
	for _, e := range spy.putEntries {
		assert.Empty(t, e.Header.Values("Set-Cookie"))
		assert.Empty(t, e.Header.Values(HeaderCacheStatus))
	}
}

// Every GET response the cache handles carries the caller's own
// request, not the cache's clone with validators.
func TestResponsesCarryTheCallersRequest(t *testing.T) {
	var version atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		etagHandler(fmt.Sprintf(`"v%d"`, version.Load()), "v")(w, r)
	})
	tr := NewTransport(NewMemoryStore(0))
	for i, change := range []bool{false, false, true} {
		if change {
			version.Add(1)
		}
		req, err := http.NewRequest(http.MethodGet, o.URL, nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Same(t, req, resp.Request, "response %d", i)
		assert.Empty(t, resp.Request.Header.Get("If-None-Match"))
	}
}

type idleCloser struct {
	http.RoundTripper
	closed atomic.Int32
}

func (c *idleCloser) CloseIdleConnections() { c.closed.Add(1) }

// CloseIdleConnections reaches the base transport.
func TestCloseIdleConnectionsReachesTheBase(t *testing.T) {
	base := &idleCloser{RoundTripper: http.DefaultTransport}
	c := NewTransport(NewMemoryStore(0), WithBase(base)).Client()
	c.CloseIdleConnections()
	assert.Equal(t, int32(1), base.closed.Load())
	NewTransport(NewMemoryStore(0), WithBase(roundTripFunc(http.DefaultTransport.RoundTrip))).CloseIdleConnections() // no such method: nothing happens
}

// Hostile bases: a nil response without an error, or a header map with
// non-canonical keys, never panic.
func TestHostileBaseResponses(t *testing.T) {
	nilResp := NewTransport(NewMemoryStore(0), WithBase(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, nil })))
	req := httptest.NewRequest(http.MethodGet, "http://example.test/", nil)
	req.RequestURI = ""
	_, err := nilResp.RoundTrip(req)
	assert.Error(t, err)

	ms := NewMemoryStore(0)
	odd := NewTransport(ms, WithBase(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h := http.Header{"etag": {`"x"`}, "cache-control": {"no-store"}}
		return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader("b")), ContentLength: 1, Request: r}, nil
	})))
	resp, err := odd.RoundTrip(req)
	require.NoError(t, err)
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Zero(t, ms.Len(), "a lowercase cache-control: no-store was not read")
}

func TestResultOf(t *testing.T) {
	tests := []struct {
		status []string
		want   Result
	}{
		{nil, ResultNone},
		{[]string{"OtherCache; hit"}, ResultNone},
		{[]string{"etagcache; fwd=uri-miss; stored"}, ResultMiss},
		{[]string{"etagcache; fwd=stale; fwd-status=200; stored"}, ResultMiss},
		{[]string{"etagcache; fwd=stale; detail=etag-mismatch; fwd-status=200"}, ResultMiss},
		{[]string{"CDN; hit, etagcache; fwd=stale; fwd-status=304"}, ResultRevalidated},
		{[]string{"CDN; fwd=stale; fwd-status=304", "etagcache; fwd=bypass"}, ResultBypass},
		{[]string{"etagcache; hit; ttl=30"}, ResultHit},
	}
	for _, tt := range tests {
		resp := &http.Response{Header: http.Header{HeaderCacheStatus: tt.status}}
		assert.Equal(t, tt.want, ResultOf(resp), "%v", tt.status)
	}
	assert.Equal(t, ResultNone, ResultOf(nil))
	assert.Equal(t, "revalidated", ResultRevalidated.String())
}

// A variant stored beside the primary goes where lookups look, even when
// its own Vary differs from the primary's (lighttpd and Caddy send Vary:
// Accept-Encoding on compressed responses only).
func TestVariantWithOtherVaryIsFoundAgain(t *testing.T) {
	const content = "text that the server compresses when it may"
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		gz := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		tag := `"c1"`
		if gz {
			tag = `"c1-gzip"`
			w.Header().Set("Vary", "Accept-Encoding")
		}
		w.Header().Set("ETag", tag)
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = io.WriteString(zw, content)
			_ = zw.Close()
			return
		}
		_, _ = io.WriteString(w, content)
	})
	c := NewTransport(NewMemoryStore(0)).Client()
	gz := http.Header{"Accept-Encoding": {"gzip"}}
	_, body := get(t, c, o.URL, gz.Clone()) // primary: gzip, Vary: Accept-Encoding
	require.Equal(t, content, gunzip(t, body))
	_, body = get(t, c, o.URL, http.Header{"Accept-Encoding": {"identity"}}) // beside it, no Vary
	require.Equal(t, content, body)
	resp, body := get(t, c, o.URL, http.Header{"Accept-Encoding": {"identity"}})
	assert.Equal(t, content, body)
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "the identity variant was stored where no lookup finds it")
	resp, body = get(t, c, o.URL, gz.Clone())
	assert.Equal(t, content, gunzip(t, body))
	assert.Equal(t, ResultRevalidated, ResultOf(resp))
}

// Under a partition hook, a Vary that names a credential does not make
// every new token a variant miss: the hook speaks for the user.
func TestPartitionHookWithVaryNamingCredentials(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Accept, Authorization, Cookie")
		etagHandler(`"v1"`, "repo")(w, r)
	})
	c := NewTransport(NewMemoryStore(0), WithPartition(func(*http.Request) string { return "installation-1" })).Client()
	for i := 0; i < 4; i++ {
		resp, _ := get(t, c, o.URL, http.Header{"Authorization": {fmt.Sprint("token t", i)}, "Cookie": {fmt.Sprint("s=", i)}})
		if i > 0 {
			assert.Equal(t, ResultRevalidated, ResultOf(resp), "token %d was a variant miss", i)
		}
	}
	// Other Vary-named fields still select variants.
	_, body := get(t, c, o.URL, http.Header{"Accept": {"text/html"}, "Authorization": {"token t9"}})
	assert.Equal(t, "repo", body)
	assert.Empty(t, o.last().Get("If-None-Match"), "a request with another Accept was sent the stored variant's tag")
}

// A 200 that carries the stored entry's strong tag (an origin that ignores
// If-None-Match, as Apache does for its "-gzip" tags) is not written again;
// one whose Last-Modified moved is.
func TestSameStrongTagIsNotRewritten(t *testing.T) {
	var lm atomic.Value
	lm.Store("Mon, 01 Jun 2026 00:00:00 GMT")
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"x-gzip"`)
		w.Header().Set("Last-Modified", lm.Load().(string))
		_, _ = io.WriteString(w, "content")
	})
	tr := NewTransport(NewMemoryStore(0))
	c := tr.Client()
	for i := 0; i < 4; i++ {
		_, body := get(t, c, o.URL, nil)
		require.Equal(t, "content", body)
	}
	assert.Equal(t, int64(1), tr.Stats().Stored, "the same representation was written on every poll")
	lm.Store("Tue, 02 Jun 2026 00:00:00 GMT") // touched: same tag, newer date
	for i := 0; i < 3; i++ {
		_, body := get(t, c, o.URL, nil)
		require.Equal(t, "content", body)
	}
	assert.Equal(t, int64(2), tr.Stats().Stored)
	assert.Equal(t, "Tue, 02 Jun 2026 00:00:00 GMT", o.last().Get("If-Modified-Since"))
}
