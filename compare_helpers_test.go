package etagcache_test

// Helpers of the side-by-side tests in compare_test.go and compare_race_test.go.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gregjones/httpcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// cmpOrigin is an httptest origin that records every request it receives
// and the status it answered with. version is scenario state that the
// handler reads and the script may change.
type cmpOrigin struct {
	*httptest.Server
	version atomic.Int64
	mu      sync.Mutex
	seen    []cmpSeenRequest
}

type cmpSeenRequest struct {
	method string
	header http.Header
	status int
}

type cmpHandler func(o *cmpOrigin, w http.ResponseWriter, r *http.Request)

func newCmpOrigin(t testing.TB, h cmpHandler) *cmpOrigin {
	t.Helper()
	o := &cmpOrigin{}
	o.version.Store(1)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Recorded on arrival, and the status as it is written: a hijacked
		// answer reaches the client before the handler returns.
		o.mu.Lock()
		o.seen = append(o.seen, cmpSeenRequest{method: r.Method, header: r.Header.Clone()})
		i := len(o.seen) - 1
		o.mu.Unlock()
		sw := &cmpStatusWriter{ResponseWriter: w, set: func(code int) {
			o.mu.Lock()
			if o.seen[i].status == 0 {
				o.seen[i].status = code
			}
			o.mu.Unlock()
		}}
		h(o, sw, r)
		sw.set(http.StatusOK) // a handler that wrote nothing
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *cmpOrigin) requests() []cmpSeenRequest {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]cmpSeenRequest(nil), o.seen...)
}

// statuses are the statuses the origin answered with, in order.
func (o *cmpOrigin) statuses() []int {
	var s []int
	for _, r := range o.requests() {
		s = append(s, r.status)
	}
	return s
}

// field is the value of one request header field in every request the
// origin received, in order ("" where absent).
func (o *cmpOrigin) field(name string) []string {
	var s []string
	for _, r := range o.requests() {
		s = append(s, r.header.Get(name))
	}
	return s
}

// cmpStatusWriter records the status a handler answers with; the first
// one set counts.
type cmpStatusWriter struct {
	http.ResponseWriter
	set func(code int)
}

func (w *cmpStatusWriter) WriteHeader(code int) {
	w.set(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *cmpStatusWriter) Write(p []byte) (int, error) {
	w.set(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

func (w *cmpStatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeRaw answers with raw bytes on the hijacked connection and closes it:
// for responses net/http's server would not send (a truncated body, a 304
// with Content-Length).
func cmpWriteRaw(w http.ResponseWriter, status int, raw string) {
	w.(*cmpStatusWriter).set(status)
	conn, bw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	_, _ = bw.WriteString(raw)
	_ = bw.Flush()
	_ = conn.Close()
}

// cmpCountingCache counts the writes httpcache makes to its cache; each one is
// a whole dumped response, header and body.
type cmpCountingCache struct {
	httpcache.Cache
	sets atomic.Int64
}

func (c *cmpCountingCache) Set(key string, b []byte) {
	c.sets.Add(1)
	c.Cache.Set(key, b)
}

// cmpRun is one implementation running one scenario against its own origin.
type cmpRun struct {
	impl       string
	origin     *cmpOrigin
	client     *http.Client
	bodyWrites func() int64 // whole bodies written to the cache
	got        []cmpExchange
}

// cmpExchange is what the caller saw for one request.
type cmpExchange struct {
	status        int
	header        http.Header
	contentLength int64
	body          string
	readErr       error
}

const (
	implHTTPCache = "httpcache"
	implOurs      = "etagcache"
)

func newCmpRun(t *testing.T, impl string, h cmpHandler) *cmpRun {
	t.Helper()
	r := &cmpRun{impl: impl, origin: newCmpOrigin(t, h)}
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	switch impl {
	case implHTTPCache:
		cc := &cmpCountingCache{Cache: httpcache.NewMemoryCache()}
		tr := httpcache.NewTransport(cc)
		tr.Transport = base
		r.client, r.bodyWrites = tr.Client(), cc.sets.Load
	case implOurs:
		tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithBase(base))
		r.client = tr.Client()
		r.bodyWrites = func() int64 { return tr.Stats().Stored }
	default:
		t.Fatalf("unknown implementation %q", impl)
	}
	return r
}

// do sends one request with header pairs kv, reads the whole body (keeping
// a read error rather than failing) and records what the caller saw.
func (r *cmpRun) do(t *testing.T, method, path, body string, kv ...string) cmpExchange {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.origin.URL+path, rb)
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := r.client.Do(req)
	require.NoError(t, err, "%s: %s %s", r.impl, method, path)
	b, readErr := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	ex := cmpExchange{status: resp.StatusCode, header: resp.Header, contentLength: resp.ContentLength, body: string(b), readErr: readErr}
	if method == http.MethodGet {
		r.got = append(r.got, ex)
	}
	return ex
}

func (r *cmpRun) get(t *testing.T, kv ...string) cmpExchange {
	t.Helper()
	return r.do(t, http.MethodGet, "/doc", "", kv...)
}

// bodies and statuses are what the caller got for each GET.
func (r *cmpRun) bodies() []string {
	var s []string
	for _, e := range r.got {
		s = append(s, e.body)
	}
	return s
}

func (r *cmpRun) statuses() []int {
	var s []int
	for _, e := range r.got {
		s = append(s, e.status)
	}
	return s
}

// sameForCaller asserts that both implementations gave the caller the same
// statuses and bytes, and made the same number of origin requests.
func cmpSameForCaller(t *testing.T, hc, ec *cmpRun) {
	t.Helper()
	assert.Equal(t, hc.bodies(), ec.bodies(), "bytes to the caller differ")
	assert.Equal(t, hc.statuses(), ec.statuses(), "statuses to the caller differ")
	assert.Equal(t, len(hc.origin.requests()), len(ec.origin.requests()), "number of origin requests differs")
}

// bothRuns applies f to each run, labelled with its implementation.
func cmpBothRuns(t *testing.T, hc, ec *cmpRun, f func(t *testing.T, r *cmpRun)) {
	t.Helper()
	for _, r := range []*cmpRun{hc, ec} {
		t.Run(r.impl, func(t *testing.T) { f(t, r) })
	}
}

// etagServe writes body under etag, or a 304 when the request's
// If-None-Match lists etag (weak comparison, RFC 9110 §13.1.2).
func cmpServe(w http.ResponseWriter, r *http.Request, etag, body string) {
	w.Header().Set("ETag", etag)
	if cmpINMMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = io.WriteString(w, body)
}

func cmpINMMatches(inm, etag string) bool {
	opaque := func(s string) string { return strings.TrimPrefix(strings.TrimSpace(s), "W/") }
	for _, m := range strings.Split(inm, ",") {
		if m = opaque(m); m != "" && (m == "*" || m == opaque(etag)) {
			return true
		}
	}
	return false
}

// userOf returns the user named by a "Bearer <user>-token" Authorization.
func cmpUserOf(r *http.Request) string {
	return strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "-token")
}

// cmpScenario is one row of the comparison table. The outcome texts are
// what check asserts.

func cmpRequest(url string, kv ...string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		panic(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	return req
}
