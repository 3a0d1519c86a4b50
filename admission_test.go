package etagcache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// postOrigin answers GET and POST of one URL with "<method> lang=L
// user=U", storable and self-describing: a POST answer names its own
// target in Content-Location, as RFC 9110 §9.3.3 allows for reuse.
func postOrigin(t *testing.T, cc string) *httptest.Server {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", cc)
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("ETag", `"e1"`)
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Location", r.URL.Path)
		}
		_, _ = fmt.Fprintf(w, "%s lang=%s user=%s", r.Method, r.Header.Get("Accept-Language"), r.Header.Get("Authorization"))
	}))
	t.Cleanup(o.Close)
	return o
}

func post(t *testing.T, tr *Transport, ctx context.Context, url string, kv ...string) string {
	t.Helper()
	_, body := send(t, tr, ctx, http.MethodPost, url, strings.NewReader("x"), kv...)
	return body
}

// A POST answer is filed under the POST's own Vary values: a POST with
// Accept-Language: de answers a later GET with de, never a plain GET.
func TestPostAnswerFiledUnderItsVaryValues(t *testing.T) {
	o := postOrigin(t, "max-age=600")
	tr := NewTransport(NewMemoryStore(0), WithFreshness(true))
	require.Equal(t, "POST lang=de user=", post(t, tr, context.Background(), o.URL+"/doc", "Accept-Language", "de"))
	resp, body := getBody(t, tr, o.URL+"/doc")
	assert.Equal(t, "GET lang= user=", body, "a plain GET got the answer to a POST with Accept-Language: de")
	assert.Equal(t, ResultMiss, ResultOf(resp))
	resp, body = getBody(t, tr, o.URL+"/doc", "Accept-Language", "de")
	assert.Equal(t, "POST lang=de user=", body)
	assert.Equal(t, ResultHit, ResultOf(resp))
}

// A POST whose caller said not to store (WithoutStore, or a request
// no-store) leaves nothing in the store.
func TestPostAnswerHonoursNoStore(t *testing.T) {
	o := postOrigin(t, "max-age=600")
	for name, p := range map[string]func(tr *Transport){
		"WithoutStore": func(tr *Transport) { post(t, tr, WithoutStore(context.Background()), o.URL+"/doc") },
		"no-store":     func(tr *Transport) { post(t, tr, context.Background(), o.URL+"/doc", "Cache-Control", "no-store") },
	} {
		t.Run(name, func(t *testing.T) {
			ms := NewMemoryStore(0)
			tr := NewTransport(ms, WithFreshness(true))
			p(tr)
			assert.Zero(t, ms.Len())
			_, body := getBody(t, tr, o.URL+"/doc")
			assert.Equal(t, "GET lang= user=", body)
		})
	}
}

// A POST answered with credentials that the base transport added below
// the cache is not stored: the next anonymous GET is not alice's account.
func TestPostAnswerWithCredentialsBelow(t *testing.T) {
	o := postOrigin(t, "private, max-age=600")
	var user atomic.Value
	user.Store("alice")
	ms := NewMemoryStore(0)
	tr := NewTransport(ms, WithFreshness(true), WithBase(authBelow{&user, http.DefaultTransport}))
	require.Equal(t, "POST lang= user=alice", post(t, tr, context.Background(), o.URL+"/doc"))
	assert.Zero(t, ms.Len(), "alice's POST answer was stored in the anonymous partition")
	anon := NewTransport(ms, WithFreshness(true))
	_, body := getBody(t, anon, o.URL+"/doc")
	assert.Equal(t, "GET lang= user=", body)
}

// A 304 that changed only Date is written, in freshness mode, only for an
// entry whose renewed age could let it answer without the origin.
func TestRenewable(t *testing.T) {
	date := time.Now().UTC().Format(http.TimeFormat)
	old := time.Now().Add(-240 * time.Hour).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		h      http.Header
		status int
		want   bool
	}{
		{http.Header{"Cache-Control": {"max-age=60"}, "Date": {date}}, 200, true},
		{http.Header{"Cache-Control": {"no-cache, max-age=60"}, "Date": {date}}, 200, false},
		{http.Header{"Cache-Control": {"max-age=0"}, "Date": {date}}, 200, false},
		{http.Header{"Date": {date}}, 200, false},
		{http.Header{"Date": {date}, "Last-Modified": {old}}, 200, true}, // heuristic
		{http.Header{"Cache-Control": {"max-age=0, stale-while-revalidate=30"}, "Date": {date}}, 200, true},
		{http.Header{"Cache-Control": {"max-age=0, stale-if-error=30"}, "Date": {date}}, 200, true},
		{http.Header{"Expires": {date}, "Date": {old}}, 200, true},
	} {
		e := &Entry{Status: tc.status, Header: tc.h}
		tr := NewTransport(NewMemoryStore(0), WithFreshness(true))
		assert.Equal(t, tc.want, tr.renewable(e), "%v", tc.h)
		assert.False(t, NewTransport(NewMemoryStore(0)).renewable(e), "default mode: %v", tc.h)
	}
	tr := NewTransport(NewMemoryStore(0), WithFreshness(true), WithStaleIfError(time.Minute))
	assert.True(t, tr.renewable(&Entry{Status: 200, Header: http.Header{"Date": {date}}}), "a configured stale-if-error window")
}
