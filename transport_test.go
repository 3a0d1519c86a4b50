package etagcache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Point 1: only GET is served from the store; the request is never mutated.
func TestOnlyGETIsServedAndRequestIsNotMutated(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"v1"`, "hello"))
	tr := NewTransport(NewMemoryStore(0))
	c := tr.Client()

	req, err := http.NewRequest(http.MethodGet, o.URL+"/r", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/plain")
	before := req.Header.Clone()
	for i := 0; i < 2; i++ {
		resp, err := c.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	assert.Equal(t, before, req.Header, "the caller's request header was modified")
	assert.Equal(t, `"v1"`, o.last().Get("If-None-Match"))

	// OPTIONS and HEAD go through without validators from the store.
	for _, m := range []string{http.MethodHead, http.MethodOptions} {
		req, _ := http.NewRequest(m, o.URL+"/r", nil)
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Empty(t, o.last().Get("If-None-Match"), m)
		assert.Empty(t, resp.Header.Get(HeaderFromCache), m)
	}
}

func TestCacheKeyNormalisation(t *testing.T) {
	tests := []struct{ in, want string }{
		{"HTTP://Example.COM:80/a?b=1#frag", "http://example.com/a?b=1"},
		{"https://example.com:443", "https://example.com/"},
		{"https://example.com:8443/A/B", "https://example.com:8443/A/B"},
		{"http://user:pw@example.com/x", "http://example.com/x"},
		{"http://[::1]:80/x", "http://[::1]/x"},
		{"http://[::1]:8080/x?", "http://[::1]:8080/x?"},
		{"http://example.com/a%2Fb", "http://example.com/a%2Fb"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.in)
		require.NoError(t, err)
		assert.Equal(t, tt.want, cacheKey(u), tt.in)
	}
}

// Point 1: entries are partitioned by credentials, which are never stored.
func TestCredentialsPartitionEntriesAndAreNeverStored(t *testing.T) {
	const alice, bob = "Bearer alice-secret-token", "Bearer bob-secret-token"
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		user := strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "-secret-token")
		etag := `"` + user + `-e"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Vary", "X-Api-Key")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "private data of %s", user)
	})
	spy := &spyStore{Store: NewMemoryStore(0)}
	c := NewTransport(spy).Client()

	_, body := fetch(t, c, o.URL, "Authorization", alice, "Cookie", "session=alice-cookie", "X-Api-Key", "alice-key")
	assert.Contains(t, body, "alice")
	resp, body := fetch(t, c, o.URL, "Authorization", bob, "X-Api-Key", "alice-key")
	assert.Contains(t, body, "bob", "bob was served alice's body")
	assert.Empty(t, o.last().Get("If-None-Match"), "bob's request carried alice's validator")
	assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "fwd=uri-miss")
	resp, body = fetch(t, c, o.URL, "Authorization", alice, "Cookie", "session=alice-cookie", "X-Api-Key", "alice-key")
	assert.Contains(t, body, "alice")
	assert.Equal(t, ResultRevalidated, ResultOf(resp))
	// Without credentials nobody's entry is used either.
	_, _ = fetch(t, c, o.URL, "X-Api-Key", "alice-key")
	assert.Empty(t, o.last().Get("If-None-Match"))

	spy.mu.Lock()
	defer spy.mu.Unlock()
	require.NotEmpty(t, spy.putEntries)
	for _, e := range spy.putEntries {
		enc := string(EncodeEntry(e))
		for _, secret := range []string{"alice-secret-token", "bob-secret-token", "alice-cookie", "alice-key"} {
			assert.NotContains(t, enc, secret, "a credential or Vary value was written to the store")
		}
	}
	ms := spy.Store.(*MemoryStore)
	for key, vs := range ms.items {
		for variant := range vs {
			assert.NotContains(t, key+variant, "secret")
			assert.NotContains(t, key+variant, "alice")
		}
	}
}

// Point 2: what is stored and what is not.
func TestWhatIsStored(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		reqHdr map[string]string
		stored bool
	}{
		{"200 with ETag", 200, map[string]string{"ETag": `"a"`}, nil, true},
		{"200 with Last-Modified", 200, map[string]string{"Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"}, nil, true},
		{"200 without validator", 200, nil, nil, false},
		{"200 with invalid Last-Modified only", 200, map[string]string{"Last-Modified": "yesterday"}, nil, false},
		{"404 with ETag", 404, map[string]string{"ETag": `"a"`}, nil, false},
		{"201 with ETag", 201, map[string]string{"ETag": `"a"`}, nil, false},
		{"response no-store", 200, map[string]string{"ETag": `"a"`, "Cache-Control": "private, No-Store"}, nil, false},
		{"request no-store", 200, map[string]string{"ETag": `"a"`}, map[string]string{"Cache-Control": "no-store"}, false},
		{"Vary star", 200, map[string]string{"ETag": `"a"`, "Vary": "Accept, *"}, nil, false},
		{"no-cache is stored and always revalidated", 200, map[string]string{"ETag": `"a"`, "Cache-Control": "no-cache"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, "body")
			})
			ms := NewMemoryStore(0)
			var kv []string
			for k, v := range tt.reqHdr {
				kv = append(kv, k, v)
			}
			resp, _ := fetch(t, NewTransport(ms).Client(), o.URL, kv...)
			want := 0
			if tt.stored {
				want = 1
			}
			assert.Equal(t, want, ms.Len())
			assert.Equal(t, tt.stored, strings.HasSuffix(resp.Header.Get(HeaderCacheStatus), "; stored"), resp.Header.Get(HeaderCacheStatus))
		})
	}
}

// Point 2: hop-by-hop fields and Set-Cookie are not stored.
func TestHopByHopAndSetCookieAreNotStored(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"a"`)
		w.Header().Set("Connection", "X-Private-Hop")
		w.Header().Set("X-Private-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Set-Cookie", "session=abc")
		w.Header().Set("X-Kept", "yes")
		_, _ = io.WriteString(w, "body")
	})
	spy := &spyStore{Store: NewMemoryStore(0)}
	resp, _ := fetch(t, NewTransport(spy).Client(), o.URL)
	assert.Equal(t, "session=abc", resp.Header.Get("Set-Cookie"), "the caller still sees Set-Cookie")
	require.Len(t, spy.putEntries, 1)
	h := spy.putEntries[0].Header
	assert.Equal(t, "yes", h.Get("X-Kept"))
	for _, k := range []string{"Connection", "X-Private-Hop", "Keep-Alive", "Set-Cookie", HeaderCacheStatus, HeaderFromCache} {
		assert.Empty(t, h.Values(k), k)
	}
}

// Point 3: headers come back before the body is complete; the body streams.
func TestBodyStreamsBeforeItIsComplete(t *testing.T) {
	release := make(chan struct{})
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"s"`)
		_, _ = io.WriteString(w, "first|")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second")
	})
	ms := NewMemoryStore(0)
	resp, err := NewTransport(ms).Client().Get(o.URL)
	require.NoError(t, err, "RoundTrip waited for the whole body")
	buf := make([]byte, 6)
	_, err = io.ReadFull(resp.Body, buf)
	require.NoError(t, err)
	assert.Equal(t, "first|", string(buf))
	assert.Equal(t, 0, ms.Len(), "stored before the body was complete")
	close(release)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	assert.Equal(t, "second", string(rest))
	assert.Equal(t, 1, ms.Len())
}

// Point 3: a truncated, failed or half-read body is never stored.
func TestIncompleteBodiesAreNotStored(t *testing.T) {
	t.Run("truncated against Content-Length", func(t *testing.T) {
		o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			conn, bw, err := w.(http.Hijacker).Hijack()
			require.NoError(t, err)
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nETag: \"t\"\r\nContent-Length: 100\r\n\r\nonly part of it")
			_ = bw.Flush()
			_ = conn.Close()
		})
		ms := NewMemoryStore(0)
		resp, err := NewTransport(ms).Client().Get(o.URL)
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.Error(t, err)
		resp.Body.Close()
		assert.Equal(t, 0, ms.Len())
	})
	t.Run("closed before EOF", func(t *testing.T) {
		o := newRecordingOrigin(t, etagHandler(`"h"`, strings.Repeat("x", 10000)))
		ms := NewMemoryStore(0)
		resp, err := NewTransport(ms).Client().Get(o.URL)
		require.NoError(t, err)
		_, err = io.ReadFull(resp.Body, make([]byte, 100))
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, 0, ms.Len())
	})
	t.Run("length differs from Content-Length", func(t *testing.T) {
		var closed atomic.Bool
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Header: http.Header{"Etag": {`"x"`}}, ContentLength: 10,
				Body: &closeSpy{Reader: strings.NewReader("short"), closed: &closed}, Request: r}, nil
		})
		ms := NewMemoryStore(0)
		resp, err := NewTransport(ms, WithBase(base)).RoundTrip(httptest.NewRequest("GET", "http://x.test/", nil))
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "short", string(b))
		assert.Equal(t, 0, ms.Len())
	})
}

// Point 3: a body over the cap streams through whole and is not stored;
// no more than the cap is ever buffered.
func TestBodyOverMaxEntrySizeStreamsThrough(t *testing.T) {
	big := strings.Repeat("0123456789", 1000)
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"big"`)
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				}
				_, _ = io.WriteString(w, big)
			})
			ms := NewMemoryStore(0)
			tr := NewTransport(ms, WithMaxEntrySize(1000))
			_, body := fetch(t, tr.Client(), o.URL)
			assert.Equal(t, big, body)
			assert.Equal(t, 0, ms.Len())
		})
	}
	var committed bool
	b := newStoringBody(context.Background(), io.NopCloser(strings.NewReader(big)), -1, 1000, func([]byte) { committed = true })
	p := make([]byte, 300)
	for {
		_, err := b.Read(p)
		assert.LessOrEqual(t, cap(b.buf), 1000, "buffered past the cap")
		if err != nil {
			break
		}
	}
	assert.False(t, committed)
}

// Point 4: validators go back exactly as received.
func TestValidatorsAreSentBackVerbatim(t *testing.T) {
	const lm = "Tue, 15 Nov 1994 12:45:26 GMT"
	tests := []struct {
		name, etag, lastMod, wantINM, wantIMS string
	}{
		{"weak etag", `W/"abc"`, "", `W/"abc"`, ""},
		{"strong etag and date", `"xyz"`, lm, `"xyz"`, lm},
		{"date only", "", lm, "", lm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.etag != "" {
					w.Header().Set("ETag", tt.etag)
				}
				if tt.lastMod != "" {
					w.Header().Set("Last-Modified", tt.lastMod)
				}
				_, _ = io.WriteString(w, "b")
			})
			c := NewTransport(NewMemoryStore(0)).Client()
			fetch(t, c, o.URL)
			fetch(t, c, o.URL)
			h := o.last()
			assert.Equal(t, tt.wantINM, h.Get("If-None-Match"))
			assert.Equal(t, tt.wantIMS, h.Get("If-Modified-Since"))
		})
	}
}

// Point 5: the 304 is merged into the stored response (RFC 9111 §3.2) and
// the caller sees an ordinary 200.
func TestNotModifiedIsMergedIntoA200(t *testing.T) {
	const body = `{"id":1,"name":"etagcache"}`
	var n atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("ETag", `W/"gh1"`) // GitHub: weak on the 200 ...
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-RateLimit-Remaining", "59")
			w.Header().Set("Cache-Control", "private, max-age=60")
			_, _ = io.WriteString(w, body)
			return
		}
		w.Header().Set("ETag", `"gh1"`) // ... strong on the 304
		w.Header().Set("X-RateLimit-Remaining", "58")
		w.Header().Set("X-New", "added")
		w.Header().Set("Content-Length", "0")
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "hop")
		w.WriteHeader(http.StatusNotModified)
	})
	spy := &spyStore{Store: NewMemoryStore(0)}
	tr := NewTransport(spy)
	c := tr.Client()
	fetch(t, c, o.URL)

	req, _ := http.NewRequest(http.MethodGet, o.URL, nil)
	resp, err := c.Do(req)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	assert.Equal(t, body, string(got))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "200 OK", resp.Status)
	assert.Equal(t, int64(len(body)), resp.ContentLength)
	assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
	assert.Same(t, req, resp.Request)
	assert.Equal(t, "HTTP/1.1", resp.Proto)
	assert.Equal(t, `"gh1"`, resp.Header.Get("Etag"), "the 304's ETag replaces the stored one")
	assert.Equal(t, "58", resp.Header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, "added", resp.Header.Get("X-New"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Empty(t, resp.Header.Get("Content-Encoding"), "Content-Encoding from a 304 must not describe the stored body")
	assert.Empty(t, resp.Header.Get("X-Hop"))
	assert.Empty(t, resp.Header.Get(HeaderFromCache), "the origin was asked: the header is the origin's")
	assert.Equal(t, ResultRevalidated, ResultOf(resp))

	// Persisted through the header-only path, not a full Put.
	_, puts, updates, _ := spy.counts()
	assert.Equal(t, 1, puts)
	assert.Equal(t, 1, updates)
	e, err := spy.Store.Get(context.Background(), cacheKey(req.URL), "")
	require.NoError(t, err)
	assert.Equal(t, "58", e.Header.Get("X-RateLimit-Remaining"))
	assert.Equal(t, body, string(e.Body))

	// Changing what the caller got changes nothing stored.
	resp.Header.Set("X-RateLimit-Remaining", "tampered")
	resp.Header["Content-Type"][0] = "tampered"
	_, _ = fetch(t, c, o.URL)
	e, _ = spy.Store.Get(context.Background(), cacheKey(req.URL), "")
	assert.Equal(t, "application/json", e.Header.Get("Content-Type"))

	st := tr.Stats()
	assert.Equal(t, Stats{Requests: 3, Stored: 1, Revalidated: 2, BytesServed: 2 * int64(len(body))}, st)
}

// Point 5: a 304 without ETag confirms the entry; the 304's body is drained
// so the connection is reused.
func TestNotModifiedWithoutETagAndConnectionReuse(t *testing.T) {
	var n atomic.Int32
	var conns atomic.Int32
	o := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("ETag", `"e"`)
			_, _ = io.WriteString(w, "payload")
			return
		}
		w.WriteHeader(http.StatusNotModified)
	}))
	o.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	o.Start()
	defer o.Close()
	c := NewTransport(NewMemoryStore(0), WithBase(&http.Transport{})).Client()
	for i := 0; i < 5; i++ {
		_, body := fetch(t, c, o.URL)
		assert.Equal(t, "payload", body)
	}
	assert.Equal(t, int32(1), conns.Load(), "connections were not reused")
}

// Point 6: a 304 that names another representation never reaches the
// caller; the request is sent once more without validators.
func TestUnusableNotModifiedIsRetriedWithoutValidators(t *testing.T) {
	var n atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("ETag", `"old"`)
			_, _ = io.WriteString(w, "old body")
		case 2:
			w.Header().Set("ETag", `"other"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("ETag", `"new"`)
			_, _ = io.WriteString(w, "new body")
		}
	})
	ms := NewMemoryStore(0)
	c := NewTransport(ms).Client()
	fetch(t, c, o.URL)
	resp, body := fetch(t, c, o.URL)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "new body", body)
	assert.Empty(t, resp.Header.Get(HeaderFromCache))
	assert.Contains(t, resp.Header.Get(HeaderCacheStatus), "detail=etag-mismatch")
	reqs := o.requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, `"old"`, reqs[1].Get("If-None-Match"))
	assert.Empty(t, reqs[2].Get("If-None-Match"))
	assert.Empty(t, reqs[2].Get("If-Modified-Since"))
	fetch(t, c, o.URL)
	assert.Equal(t, `"new"`, o.last().Get("If-None-Match"), "the fresh answer replaced the entry")
}

// Point 6: an entry that vanishes from the store while its revalidation is
// in flight is still served: the transport holds the entry it validated.
func TestEntryVanishingDuringRevalidation(t *testing.T) {
	ms := NewMemoryStore(0)
	var n atomic.Int32
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v"`)
		if n.Add(1) == 1 {
			_, _ = io.WriteString(w, "kept")
			return
		}
		require.NoError(t, ms.Delete(context.Background(), cacheKey(r.URL)))
		w.Header().Set("X-Changed", "yes") // forces a header update
		w.WriteHeader(http.StatusNotModified)
	})
	var logs bytes.Buffer
	tr := NewTransport(ms, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	fetch(t, tr.Client(), o.URL)
	resp, body := fetch(t, tr.Client(), o.URL+"/")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "kept", body)
	assert.Zero(t, tr.Stats().StoreErrors, "a vanished entry is not a store failure")
	assert.Empty(t, logs.String())
}

// Point 6: an unconditional 304 (a broken origin) never reaches the caller.
func TestUnaskedNotModifiedIsAnError(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotModified)
	})
	_, err := NewTransport(NewMemoryStore(0)).Client().Get(o.URL)
	require.ErrorIs(t, err, ErrUnexpectedNotModified)
}

// Point 7: the caller's own preconditions, Range and no-store pass through.
func TestCallerPreconditionsPassThrough(t *testing.T) {
	for _, field := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"} {
		t.Run(field, func(t *testing.T) {
			o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"stored"`)
				if r.Header.Get("If-None-Match") != "" {
					w.WriteHeader(http.StatusNotModified)
					return
				}
				_, _ = io.WriteString(w, "full")
			})
			spy := &spyStore{Store: NewMemoryStore(0)}
			c := NewTransport(spy).Client()
			fetch(t, c, o.URL)
			value := `"caller"`
			if field == "If-Modified-Since" || field == "If-Unmodified-Since" {
				value = "Sun, 06 Nov 1994 08:49:37 GMT"
			} else if field == "Range" {
				value = "bytes=0-1"
			}
			resp, _ := fetch(t, c, o.URL, field, value)
			h := o.last()
			assert.Equal(t, value, h.Get(field))
			if field != "If-None-Match" {
				assert.Empty(t, h.Get("If-None-Match"), "validators were added to the caller's conditional request")
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			} else {
				assert.Equal(t, http.StatusNotModified, resp.StatusCode, "the caller's own 304 is returned as is")
			}
			assert.Equal(t, "etagcache; fwd=bypass", resp.Header.Get(HeaderCacheStatus))
			_, puts, _, _ := spy.counts()
			assert.Equal(t, 1, puts)
		})
	}
}

// Point 7: HEAD passes through and never replaces the stored GET body;
// request no-store bypasses the store.
func TestHeadAndNoStoreRequestsBypass(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"g"`, "the body"))
	spy := &spyStore{Store: NewMemoryStore(0)}
	tr := NewTransport(spy)
	c := tr.Client()
	fetch(t, c, o.URL)
	resp, err := c.Head(o.URL)
	require.NoError(t, err)
	resp.Body.Close()
	resp, _ = fetch(t, c, o.URL, "Cache-Control", "no-store")
	assert.Equal(t, "etagcache; fwd=bypass", resp.Header.Get(HeaderCacheStatus))
	assert.Empty(t, o.last().Get("If-None-Match"))
	gets, puts, updates, _ := spy.counts()
	assert.Equal(t, []int{1, 1, 0}, []int{gets, puts, updates}, "HEAD or no-store touched the store")
	_, body := fetch(t, c, o.URL)
	assert.Equal(t, "the body", body)
	assert.Equal(t, int64(2), tr.Stats().Bypassed)
}
