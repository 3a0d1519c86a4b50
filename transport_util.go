package etagcache

// Helpers of transport.go: the bodies it serves, the trust checks on what
// the origin answered, and a small bounded set.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
)

// unaccounted reports whether the request the base transport really sent
// (net/http's resp.Request) carries credentials that the partition did not
// account for: a base that authenticates by itself. Such a response must be
// neither stored nor merged, since the cache cannot tell users apart.
func (t *Transport) unaccounted(ctx context.Context, sent *http.Request, resp *http.Response) bool {
	if t.partitionOf != nil || resp.Request == nil || resp.Request == sent {
		return false
	}
	got := canonicalHeader(resp.Request.Header)
	if !hasCredentials(got) {
		return false
	}
	want := canonicalHeader(sent.Header)
	for _, name := range credentialFields {
		if !slices.Equal(got[name], want[name]) {
			if !t.warnedBelow.Swap(true) {
				t.log.WarnContext(ctx, "etagcache: the base transport adds credentials that the cache cannot see, "+
					"so its responses are not cached; put the authenticating transport above the cache "+
					"(for example &oauth2.Transport{Base: cache}), or keep it below and name the user with WithPartition",
					"field", name)
			}
			return true
		}
	}
	return false
}

// unconfirmable reports whether h is the header of a content-coded body
// with a weak tag for a resource whose origin has answered such a body's
// revalidation with the identity's strong tag (nginx with gzip): no 304
// will ever confirm it, so it is neither revalidated nor stored.
func (t *Transport) unconfirmable(key string, h http.Header) bool {
	return isWeak(h.Get("Etag")) && !acceptsCoding(nil, h) && t.weakCoded.has(key)
}

// sameStrongTag reports whether a 200 answering our conditional request
// carries the very strong tag of the stored entry: the origin ignored
// If-None-Match (Apache's mod_deflate "-gzip" tags), and the body is the
// one we hold, so storing it again would only cost a write.
func sameStrongTag(stored *Entry, h http.Header) bool {
	if stored == nil {
		return false
	}
	tag, lm, slm := h.Get("Etag"), h.Get("Last-Modified"), stored.Header.Get("Last-Modified")
	return tag != "" && !isWeak(tag) && tag == stored.Header.Get("Etag") &&
		slices.Equal(h["Content-Encoding"], stored.Header["Content-Encoding"]) &&
		(lm == "" || slm == "" || sameDate(lm, slm))
}

// storedBody serves a stored body; its bytes are shared, never copied.
type storedBody struct {
	bytes.Reader
	b []byte
}

func newStoredBody(b []byte) *storedBody {
	sb := &storedBody{b: b}
	sb.Reset(b)
	return sb
}

// allBytes lets a coalesced revalidation share the stored bytes as they are.
func (b *storedBody) allBytes() []byte { return b.b }

func (*storedBody) Close() error { return nil }

// discard drains a little of a body we do not use, so the connection can be
// reused, and closes it.
func discard(body io.ReadCloser) {
	if body == nil || body == http.NoBody {
		return
	}
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}

// keySet is a small set of keys, safe for concurrent use, that forgets
// everything when it is full: it only saves requests, so losing it is
// harmless, and it never grows past its bound.
type keySet struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

const keySetMax = 4096

func (s *keySet) add(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil || len(s.keys) >= keySetMax {
		s.keys = make(map[string]struct{})
	}
	s.keys[k] = struct{}{}
}

func (s *keySet) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.keys[k]
	return ok
}
