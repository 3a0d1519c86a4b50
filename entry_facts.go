package etagcache

import (
	"maps"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// entryFacts is what the decision and a hit read from a stored response,
// parsed from its header once.
type entryFacts struct {
	cc   cacheControl
	date time.Time // Date, or the time of receipt when missing or invalid
	age  int64     // the received Age, in seconds

	// Expires: present (any number of lines), and its time when it is one
	// valid HTTP-date.
	expiresSet, expiresOK bool
	expires               time.Time
	lastModifiedOK        bool
	lastModified          time.Time

	etag, validLM string // the validators sent on revalidation

	// initialAge is the corrected initial age of RFC 9111 §4.2.3, fixed
	// when the response was received: the current age adds only the time
	// since.
	initialAge time.Duration
	encoded    bool // has a Content-Encoding field
}

func parseFacts(e *Entry) entryFacts {
	f := entryFacts{cc: parseCacheControl(e.Header), age: ageValue(e.Header), etag: e.Header.Get("Etag"), validLM: validLastModified(e.Header)}
	var ok bool
	if f.date, ok = httpDate(e.Header.Get("Date")); !ok {
		f.date = e.ResponseTime
	}
	if vs, present := e.Header["Expires"]; present {
		f.expiresSet = true
		if len(vs) == 1 {
			f.expires, f.expiresOK = httpDate(vs[0])
		}
	}
	f.lastModified, f.lastModifiedOK = httpDate(e.Header.Get("Last-Modified"))
	apparent := span(f.date, e.ResponseTime)
	delay := span(e.RequestTime, e.ResponseTime)
	f.initialAge = min(max(apparent, seconds(f.age)+delay), deltaCap)
	_, f.encoded = e.Header["Content-Encoding"]
	return f
}

// entryMemo caches, per stored Entry, its facts and the header a hit hands
// out, so that a fresh hit from the memory store parses nothing and copies
// one map. It belongs to exactly one Entry (owner): a copy of the struct,
// which might carry another header or body, does not use it.
type entryMemo struct {
	owner *Entry
	once  sync.Once
	facts entryFacts
	// hit is the header of the latest hit served without a detail. Age
	// and Cache-Status are whole seconds, so one serves every hit of that
	// second: each caller gets a copy, and the copy is never written to (a
	// write to a full small map grows it, even to a field it has).
	hit atomic.Pointer[hitTemplate]
	// store counts the bytes of hit templates in the store holding the
	// entry; charged is what this memo added to it, -1 once released.
	store   *atomic.Int64
	charged atomic.Int64
}

type hitTemplate struct {
	age, ttl int64
	header   http.Header
	// plain is set when decide served a request without directives at
	// this age under cfg. decide reads the time only as whole seconds of
	// age, so it would serve such a request again until the age changes:
	// replayHit hands the header out without asking it again.
	plain bool
	cfg   freshConfig
}

// withMemo returns a copy of e, allocated with a memo of its own. A store
// that hands out the same *Entry again and again (the memory store) keeps
// this copy, which shares e's header map and body; the bytes of its hit
// template, once made, are added to *templates, until release.
func withMemo(e *Entry, templates *atomic.Int64) *Entry {
	c := &struct {
		e Entry
		m entryMemo
	}{e: *e}
	c.m.owner, c.m.store = &c.e, templates
	c.e.memo = &c.m
	return &c.e
}

// release takes the memo's template bytes back from its store's count.
func (m *entryMemo) release() {
	if m == nil {
		return
	}
	if n := m.charged.Swap(-1); n > 0 {
		m.store.Add(-n)
	}
}

func (e *Entry) memoized() *entryMemo {
	m := e.memo
	if m == nil || m.owner != e {
		return nil
	}
	m.once.Do(func() { m.facts = parseFacts(e) })
	return m
}

// factsOf returns the facts of e, parsed once when e carries a memo.
func factsOf(e *Entry) *entryFacts {
	if m := e.memoized(); m != nil {
		return &m.facts
	}
	f := parseFacts(e)
	return &f
}

// hitHeader returns a header map of the caller's own for a response served
// from e with the given age and remaining freshness, and a Cache-Status
// detail ("" for none): the stored fields, Content-Length set to the body's
// length (none for a 204), Age (replacing any received one, RFC 9111 §5.1),
// X-From-Cache and Cache-Status. The value slices are shared with the entry
// and with other hits, as the entry's own are: they are never modified.
// plain is the configuration under which decide served a request without
// directives, or nil for any other request.
func hitHeader(e *Entry, age, ttl time.Duration, detail string, plain *freshConfig) http.Header {
	as, ts := int64(age/time.Second), int64(ttl/time.Second)
	m := e.memoized()
	if m == nil || detail != "" {
		return newHitHeader(e, as, ts, detail)
	}
	if t := m.hit.Load(); t != nil && t.age == as && t.ttl == ts && (plain == nil || t.plain && t.cfg == *plain) {
		return maps.Clone(t.header)
	}
	h := newHitHeader(e, as, ts, "")
	t := &hitTemplate{age: as, ttl: ts, header: maps.Clone(h)}
	if plain != nil {
		t.plain, t.cfg = true, *plain
	}
	m.hit.Store(t)
	if m.store != nil && m.charged.CompareAndSwap(0, templateSize(len(h))) {
		m.store.Add(templateSize(len(h)))
	}
	return h
}

// replayHit returns the header of a hit from e for a request without
// directives, the entry having been resident for the given time, when
// decide served such a request under cfg at the same whole second of age
// (see hitTemplate.plain); nil otherwise.
func replayHit(e *Entry, resident time.Duration, cfg freshConfig) http.Header {
	m := e.memoized()
	if m == nil {
		return nil
	}
	t := m.hit.Load()
	if t == nil || !t.plain || t.cfg != cfg || int64(ageAt(&m.facts, resident)/time.Second) != t.age {
		return nil
	}
	return maps.Clone(t.header)
}

// templateSize is what a hit template of n fields holds: the struct and a
// header map (its values are shared with the entry, but for the small Age
// and Cache-Status strings).
func templateSize(n int) int64 {
	return int64(48+48+352+64) + int64(headerMapSize(n))
}

// lengthless reports whether a response of the status carries no
// Content-Length: a 1xx or a 204 never does (RFC 9110 §8.6), and a 304
// made from the store has no body to measure.
func lengthless(status int) bool {
	return status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
}

func newHitHeader(e *Entry, age, ttl int64, detail string) http.Header {
	n := len(e.Header)
	for _, k := range []string{"Content-Length", HeaderFromCache, "Age", HeaderCacheStatus} {
		if _, ok := e.Header[k]; !ok {
			n++
		}
	}
	// Sized exactly: the per-hit copy is then as small as it can be.
	h := make(http.Header, n)
	maps.Copy(h, e.Header)
	switch cl := e.Header["Content-Length"]; {
	case lengthless(e.Status):
		delete(h, "Content-Length")
	case len(cl) != 1 || !atoiIs(cl[0], len(e.Body)):
		h["Content-Length"] = []string{strconv.Itoa(len(e.Body))}
	}
	b := append(make([]byte, 0, 48), cacheName+"; hit; ttl="...)
	b = strconv.AppendInt(b, ttl, 10)
	if detail != "" {
		b = append(append(b, "; "...), detail...)
	}
	vals := []string{"1", strconv.FormatInt(age, 10), string(b)}
	h[HeaderFromCache] = vals[0:1:1]
	h["Age"] = vals[1:2:2]
	h[HeaderCacheStatus] = vals[2:3:3]
	return h
}
