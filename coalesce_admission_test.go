package etagcache

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldOrigin runs handle for every request; requests that arrive while
// the gate is shut wait at it (and are counted in held), so a test knows
// the leader of a coalesced exchange is at the origin before a follower
// joins.
type heldOrigin struct {
	*httptest.Server
	gate chan struct{}
	held atomic.Int32
	reqs atomic.Int32
}

func newHeldOrigin(t *testing.T, handle func(n int32, w http.ResponseWriter, r *http.Request)) *heldOrigin {
	o := &heldOrigin{gate: make(chan struct{})}
	close(o.gate)
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.reqs.Add(1)
		select {
		case <-o.gate:
		default:
			o.held.Add(1)
			<-o.gate
		}
		handle(n, w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// result is what one caller of a coalesced pair received.
type result struct {
	resp *http.Response
	body string
}

// pair sends lead and then follow through tr, concurrently: follow is sent
// once lead is held at the origin, and the origin answers once both wait
// on one flight. It returns what each received.
func pair(t *testing.T, tr *Transport, o *heldOrigin, lead, follow *http.Request) (l, f result) {
	t.Helper()
	o.gate = make(chan struct{})
	o.held.Store(0)
	var wg sync.WaitGroup
	do := func(req *http.Request, out *result) {
		defer wg.Done()
		resp, err := tr.RoundTrip(req)
		if !assert.NoError(t, err) {
			return
		}
		b, err := io.ReadAll(resp.Body)
		assert.NoError(t, err)
		_ = resp.Body.Close()
		*out = result{resp, string(b)}
	}
	wg.Add(2)
	go do(lead, &l)
	waitFor(t, "the leader at the origin", func() bool { return o.held.Load() == 1 })
	go do(follow, &f)
	waitFor(t, "two callers on one flight", func() bool { return tr.fx.flights.waitingAll() == 2 })
	close(o.gate)
	wg.Wait()
	return l, f
}

func newGet(t *testing.T, ctx context.Context, url string, kv ...string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	return req
}

// A response with Set-Cookie is never handed to another request: neither
// a first visit's nor a revalidation's (the 304's cookie).
func TestCoalescedFollowersNeverGetAnotherRequestsCookie(t *testing.T) {
	o := newHeldOrigin(t, func(n int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=0")
		w.Header().Set("Set-Cookie", fmt.Sprintf("session=s%d", n))
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "doc")
	})
	for _, mode := range []Option{WithFreshness(true), WithCoalescing(true)} {
		tr := NewTransport(NewMemoryStore(0), mode)
		ctx := context.Background()
		for _, phase := range []string{"first visit", "revalidation"} {
			l, f := pair(t, tr, o, newGet(t, ctx, o.URL), newGet(t, ctx, o.URL))
			require.Equal(t, "doc", l.body, phase)
			require.Equal(t, "doc", f.body, phase)
			assert.NotEqual(t, l.resp.Header.Get("Set-Cookie"), f.resp.Header.Get("Set-Cookie"), "%s: one session for two callers", phase)
			assert.NotContains(t, f.resp.Header.Get(HeaderCacheStatus), "collapsed", phase)
		}
	}
}

type userKey struct{}

// userBelow is a base transport that authenticates by itself from the
// request's context, as oauth2.Transport does with its token source.
type userBelow struct{}

func (userBelow) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	if u, _ := r.Context().Value(userKey{}).(string); u != "" {
		r2.Header.Set("Authorization", u)
	}
	return http.DefaultTransport.RoundTrip(r2)
}

// Callers whose credentials are added below the cache look alike to the
// flight key; their answers are never shared.
func TestCoalescingAcrossCredentialsBelow(t *testing.T) {
	o := newHeldOrigin(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"`+r.Header.Get("Authorization")+`"`)
		w.Header().Set("Cache-Control", "private, max-age=60")
		_, _ = io.WriteString(w, "account of "+r.Header.Get("Authorization"))
	})
	tr := NewTransport(NewMemoryStore(0), WithFreshness(true), WithBase(userBelow{}))
	alice := context.WithValue(context.Background(), userKey{}, "alice")
	bob := context.WithValue(context.Background(), userKey{}, "bob")
	l, f := pair(t, tr, o, newGet(t, alice, o.URL), newGet(t, bob, o.URL))
	assert.Equal(t, "account of alice", l.body)
	assert.Equal(t, "account of bob", f.body, "bob was handed alice's account")
	assert.NotContains(t, f.resp.Header.Get(HeaderCacheStatus), "collapsed")
}

func gzipped(s string) string {
	var b strings.Builder
	zw := gzip.NewWriter(&b)
	_, _ = io.WriteString(zw, s)
	_ = zw.Close()
	return b.String()
}

// A follower is handed the leader's answer only when its request fits it:
// its Vary values and a coding it accepts; the others send their own.
func TestCoalescedFollowerGetsItsOwnVariant(t *testing.T) {
	// The stored entry has no Vary (lighttpd and Caddy send none on
	// identity responses); the new version varies, on coding or language.
	var version atomic.Int32
	version.Store(1)
	o := newHeldOrigin(t, func(_ int32, w http.ResponseWriter, r *http.Request) {
		v := version.Load()
		tag := fmt.Sprintf(`"v%d"`, v)
		w.Header().Set("ETag", tag)
		w.Header().Set("Cache-Control", "max-age=0")
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := fmt.Sprintf("v%d lang=%s", v, r.Header.Get("Accept-Language"))
		if v > 1 {
			w.Header().Set("Vary", "Accept-Encoding, Accept-Language")
		}
		if v > 1 && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			body = gzipped(body)
		}
		_, _ = io.WriteString(w, body)
	})
	ctx := context.Background()
	for name, opts := range map[string][]Option{
		"freshness": {WithFreshness(true)},
		"default":   {WithCoalescing(true)},
	} {
		t.Run(name, func(t *testing.T) {
			version.Store(1)
			tr := NewTransport(NewMemoryStore(0), opts...)
			getBody(t, tr, o.URL, "Accept-Encoding", "identity")
			getBody(t, tr, o.URL, "Accept-Encoding", "gzip")

			version.Store(2)
			l, f := pair(t, tr, o, newGet(t, ctx, o.URL, "Accept-Encoding", "gzip"), newGet(t, ctx, o.URL, "Accept-Encoding", "identity"))
			assert.Equal(t, gzipped("v2 lang="), l.body)
			assert.Equal(t, "v2 lang=", f.body, "a caller that asked for identity got the gzip answer")
			assert.Empty(t, f.resp.Header.Get("Content-Encoding"))

			version.Store(3)
			l, f = pair(t, tr, o, newGet(t, ctx, o.URL, "Accept-Language", "en"), newGet(t, ctx, o.URL, "Accept-Language", "de"))
			assert.Equal(t, "v3 lang=en", l.body)
			assert.Equal(t, "v3 lang=de", f.body, "a caller that asked for German got the English answer")

			// Net/http's own gzip (a caller that set no Accept-Encoding)
			// beside a caller that asked for gzip itself.
			version.Store(4)
			l, f = pair(t, tr, o, newGet(t, ctx, o.URL, "Accept-Encoding", "gzip"), newGet(t, ctx, o.URL))
			assert.Equal(t, gzipped("v4 lang="), l.body)
			assert.Equal(t, "v4 lang=", f.body, "a caller that did not ask for gzip got gzip bytes")
		})
	}
}
