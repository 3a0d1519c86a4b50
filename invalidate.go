package etagcache

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"
)

// Invalidation (RFC 9111 §4.4): a request whose method may change its
// target removes what the store holds for it, and its answer may be stored
// for later GETs when it says it is the resource (postAsGet).

// invalidations make a write's invalidation win over every response that
// was requested before it (RFC 9111 §4.4): a GET still streaming, a
// background refresh or a coalesced exchange that was under way when a
// POST succeeded must not store its older answer afterwards.
//
// Each invalidation takes the next number of a sequence and records it in
// the bucket its key hashes to; a request notes the sequence when it looks
// the store up, and a write on its behalf is dropped when the key's bucket
// has moved past that note. Buckets are shared by many keys, so a write may
// be dropped for another key's invalidation: that costs a later miss, never
// a stale answer, and the table never grows.
type invalidations struct {
	seq     atomic.Uint64
	buckets [invalidationBuckets]atomic.Uint64
}

const invalidationBuckets = 1024

// now is the note a request takes before it asks the origin anything.
func (v *invalidations) now() uint64 { return v.seq.Load() }

// mark records an invalidation of key. It comes before the store's Delete,
// so that a write that checks after the Delete sees it.
func (v *invalidations) mark(key string) {
	s := v.seq.Add(1)
	b := &v.buckets[v.bucket(key)]
	for {
		old := b.Load()
		if old >= s || b.CompareAndSwap(old, s) {
			return
		}
	}
}

// since reports whether key may have been invalidated after the note.
func (v *invalidations) since(key string, note uint64) bool {
	return v.buckets[v.bucket(key)].Load() > note
}

// bucket hashes key with FNV-1a: no seed, so the zero table works.
func (v *invalidations) bucket(key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return h % invalidationBuckets
}

// invalidate removes what the store holds for key, after marking it, so
// that no write of a response requested earlier lands after the removal:
// this Transport's writes check the mark, and a store that is an
// Invalidator refuses those of every Transport sharing it that were
// requested before at, the moment (on t's clock) from which a request's
// answer is newer than what is invalidated.
func (t *Transport) invalidate(ctx context.Context, key string, at time.Time) {
	t.inval.mark(key)
	if op, err := t.storeInvalidate(ctx, key, at); err != nil {
		t.storeFailed(ctx, op, key, err)
	}
}

// storeInvalidate removes what the store holds for key, and makes a store
// that can refuse the later writes of older responses (Invalidator) do so.
// It returns the store operation it used.
func (t *Transport) storeInvalidate(ctx context.Context, key string, at time.Time) (string, error) {
	if iv, ok := t.store.(Invalidator); ok {
		return "invalidate", iv.Invalidate(ctx, key, at)
	}
	return "delete", t.store.Delete(ctx, key)
}

// guardedWrite runs write, a store write for key on behalf of a request
// that took the note, unless key was invalidated since. An invalidation
// that lands between the check and the write is undone afterwards: the
// write is removed again, and the invalidation wins.
func (t *Transport) guardedWrite(ctx context.Context, key string, note uint64, write func() error) (bool, error) {
	if t.inval.since(key, note) {
		return false, nil
	}
	if err := write(); err != nil {
		return false, err
	}
	if t.inval.since(key, note) {
		t.storeDelete(context.WithoutCancel(ctx), key)
		return false, nil
	}
	return true, nil
}

// unsafe forwards a request whose method may change the resource, and on
// success invalidates what the store holds for its target and for the
// same-origin Location and Content-Location (RFC 9111 §4.4).
func (t *Transport) unsafe(req *http.Request) (*http.Response, error) {
	t.stats.bypassed.Add(1)
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp == nil || resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return resp, err
	}
	ctx := req.Context()
	target, h := requestURL(req), canonicalHeader(resp.Header)
	// The write is done by now: what was requested before may predate it.
	at := t.now()
	t.invalidate(ctx, t.keyOf(req), at)
	for _, field := range []string{"Location", "Content-Location"} {
		v := h.Get(field)
		if v == "" {
			continue
		}
		if u, err := target.Parse(v); err == nil && sameOrigin(u, target) {
			t.invalidate(ctx, t.stripIgnored(cacheKey(u)), at)
		}
	}
	return t.postAsGet(req, resp, t.inval.now(), at), nil
}

// postAsGet stores, in freshness mode, the answer to a POST that names its
// own target in Content-Location and has an explicit lifetime: RFC 9110
// §9.3.3 lets it answer later GETs of that URI. It is admitted as any
// answer to a GET would be, under the POST's own partition and Vary
// values; note is the invalidation sequence after the POST's own
// invalidations, and at the time of its own (the answer is stored as
// requested then, not when the POST was sent: it is what the write made,
// and an Invalidator store drops entries requested before at; only an Age
// field in the answer would be corrected by less). Anything else is
// returned as it is.
func (t *Transport) postAsGet(req *http.Request, resp *http.Response, note uint64, at time.Time) *http.Response {
	if !t.fx.cfg.enabled || req.Method != http.MethodPost || resp.StatusCode != http.StatusOK {
		return resp
	}
	h := canonicalHeader(resp.Header)
	cl := h.Get("Content-Location")
	u, err := requestURL(req).Parse(cl)
	if cl == "" || err != nil || t.stripIgnored(cacheKey(u)) != t.keyOf(req) {
		return resp
	}
	if parseCacheControl(h).maxAge < 0 && h.Get("Expires") == "" {
		return resp // heuristic freshness does not apply to POST answers
	}
	rh := canonicalHeader(req.Header)
	l := lookup{key: t.keyOf(req), h: rh, note: note}
	l.part, l.vary = t.partitionFor(req, rh)
	resp.Header = h
	stored, _, err := t.stored(req, req, l, resp, at, "fwd=method", false)
	if err != nil {
		return resp
	}
	return stored
}
