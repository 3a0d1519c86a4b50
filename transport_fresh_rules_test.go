package etagcache

import (
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// RFC 9111 §1.2.2: a Date of year 1 (a zero time.Time formatted by Go code)
// makes the age saturate at 2^31 seconds; it never wraps into a negative
// age that would keep a max-age=0 response fresh.
func TestAncientDateSaturatesTheAge(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", "Mon, 01 Jan 0001 00:00:00 GMT")
		w.Header().Set("Cache-Control", "max-age=0")
		etagHandler(`"v1"`, "doc")(w, r)
	})
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	getBody(t, tr, o.URL)
	resp, body := getBody(t, tr, o.URL)
	assert.Equal(t, "doc", body)
	assert.Equal(t, ResultRevalidated, ResultOf(resp), "a max-age=0 response is stale")
	assert.Len(t, o.requests(), 2)

	resp, _ = getBody(t, tr, o.URL, "Cache-Control", "max-stale")
	require.Equal(t, ResultHit, ResultOf(resp))
	assert.Equal(t, strconv.Itoa(maxDelta), resp.Header.Get("Age"))
	assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "ttl=-"+strconv.Itoa(maxDelta))
}

// RFC 5861 §4: the errors stale-if-error covers are 500, 502, 503 and 504
// (and no answer at all); any other status is the origin's answer.
func TestStaleIfErrorOnlyForItsStatuses(t *testing.T) {
	for _, fresh := range []bool{false, true} {
		t.Run("freshness="+strconv.FormatBool(fresh), func(t *testing.T) {
			var status atomic.Int64
			status.Store(http.StatusOK)
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if s := int(status.Load()); s != http.StatusOK {
					w.WriteHeader(s)
					return
				}
				w.Header().Set("Cache-Control", "max-age=1")
				etagHandler(`"v1"`, "doc")(w, r)
			})
			clk := newFakeClock()
			tr := newFreshTransport(t, clk, WithFreshness(fresh), WithStaleIfError(time.Hour))
			getBody(t, tr, o.URL)
			clk.Advance(time.Minute)
			for _, s := range []int{500, 502, 503, 504} {
				status.Store(int64(s))
				resp, body := getBody(t, tr, o.URL)
				assert.Equal(t, http.StatusOK, resp.StatusCode, s)
				assert.Equal(t, "doc", body, s)
				assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=stale-if-error", s)
			}
			for _, s := range []int{501, 505, 507, 599, 404} {
				status.Store(int64(s))
				resp, _ := getBody(t, tr, o.URL)
				assert.Equal(t, s, resp.StatusCode, "the origin's answer")
				assert.NotContains(t, resp.Header.Get(HeaderCacheStatus), "stale-if-error", s)
			}
		})
	}
}

// RFC 9110 §6.6.1: a 304 without Date is dated on receipt, so the merged
// response is renewed (RFC 9111 §4.3.4) and the caller sees a current Date.
func TestNotModifiedWithoutDateRenewsFreshness(t *testing.T) {
	clk := newFakeClock()
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header()["Date"] = nil // net/http adds none
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Date", clk.Now().UTC().Format(http.TimeFormat))
		_, _ = io.WriteString(w, "doc")
	})
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	clk.Advance(3 * time.Hour)

	resp, body := getBody(t, tr, o.URL)
	require.Equal(t, ResultRevalidated, ResultOf(resp))
	assert.Equal(t, "doc", body)
	assert.Equal(t, clk.Now().UTC().Format(http.TimeFormat), resp.Header.Get("Date"), "the time of receipt")

	clk.Advance(10 * time.Second)
	resp, _ = getBody(t, tr, o.URL)
	assert.Equal(t, ResultHit, ResultOf(resp), "the 304 renewed the entry")
	assert.Equal(t, "10", resp.Header.Get("Age"))
	assert.Len(t, o.requests(), 2)
}

// RFC 9110 §8.6: a 204 has no Content-Length, neither served from the store
// nor revalidated.
func TestStoredNoContentHasNoContentLength(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	clk := newFakeClock()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	resp, _ := getBody(t, tr, o.URL)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	resp, _ = getBody(t, tr, o.URL)
	require.Equal(t, ResultHit, ResultOf(resp))
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.NotContains(t, resp.Header, "Content-Length", "hit")

	clk.Advance(time.Hour)
	resp, _ = getBody(t, tr, o.URL)
	require.Equal(t, ResultRevalidated, ResultOf(resp))
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.NotContains(t, resp.Header, "Content-Length", "revalidated")
}
