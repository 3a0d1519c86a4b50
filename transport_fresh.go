package etagcache

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// freshState is the part of a Transport for freshness,
// coalescing, background revalidations and key customisation.
type freshState struct {
	cfg          freshConfig
	coalesce     bool // WithCoalescing's value, when coalesceSet
	coalesceSet  bool
	ignoredQuery []string
	clock        func() time.Time // nil: time.Now; tests set it

	flights coalescer
	bg      refreshes // stale-while-revalidate refreshes (refresh.go)
}

// WithFreshness turns RFC 9111 freshness on or off (default off).
//
// Off, every GET goes to the origin: a stored response is always
// revalidated, and only responses with a validator are stored.
//
// On, a stored response that is still fresh (max-age, Expires with Date,
// received Age, or a heuristic lifetime of 10% of the time since
// Last-Modified, capped at a day) is served without contacting the origin,
// with an Age field and Cache-Status "hit; ttl=N" and X-From-Cache: 1.
// Responses without a validator are stored too when they have a lifetime.
// The response directives no-cache, must-revalidate, no-store and immutable,
// and the request directives max-age, max-stale, min-fresh, no-cache,
// no-store and only-if-cached (and Pragma: no-cache without Cache-Control)
// are honoured. As a private cache it stores private responses and ignores
// s-maxage and proxy-revalidate. stale-while-revalidate serves the stale
// response at once and revalidates it in the background (one revalidation
// per entry at a time, each bounded to 30 seconds); stale-if-error serves
// it when the origin answers with a 500, 502, 503 or 504, or cannot be
// reached.
func WithFreshness(on bool) Option {
	return func(t *Transport) { t.fx.cfg.enabled = on }
}

// WithStaleIfError sets how long past its freshness a stored response may
// still answer a request when the origin answers with a 500, 502, 503 or 504
// status or cannot be reached, for responses that carry no stale-if-error
// directive of their own (RFC 5861 §4); 0, the default, means never. Any
// other status, a 501 or a 505 too, is the origin's answer and reaches the
// caller. It applies in both modes, but never to a response with no-cache
// or must-revalidate. A response served this way carries Cache-Status
// "hit; ttl=-N; detail=stale-if-error" and X-From-Cache: 1.
func WithStaleIfError(d time.Duration) Option {
	return func(t *Transport) { t.fx.cfg.staleIfError = max(0, d) }
}

// WithCoalescing turns request coalescing on or off. The default is on
// with WithFreshness(true) and off without: the default mode stays exactly
// what it was (every caller's request is its own exchange, streamed, with
// the fewest allocations), while freshness mode, a cache in the manner of
// gregjones/httpcache, also shields the origin from a burst of identical
// requests, which is when such a cache matters most.
//
// On, concurrent GET requests for the same resource, partition and variant
// share one origin request: a cold URL asked for by 64 goroutines at once
// costs one GET, a stored one one conditional GET. The first caller sends
// it, in its own goroutine, as without coalescing (a caller with nobody to
// share with starts no goroutine); callers that arrive while it awaits its
// header wait for that header. Each caller gets its own header map and
// body reader; a body several callers share is read once from the origin,
// into memory up to the maximum entry size (as it arrives, never by the
// length announced), and every caller streams it from there as it comes.
// A caller whose context ends leaves, whether it waits for the header or
// reads the body (its Read returns the context's error); the shared request
// goes on for the others until every caller has left. Until its header
// arrives, though, the request is the first caller's: if that caller leaves
// first, the request is cancelled and the callers still waiting send it
// again, one for all. A panic in the base transport, or in the Read of a
// body callers share, becomes an error for each of them. Requests with a
// body, their own preconditions or a Range are never coalesced, nor requests
// whose store entry is not known (cold URLs) unless their header fields are
// identical. A response whose Content-Length exceeds the maximum entry size
// goes to the first caller and the others send their own requests; see
// ErrCoalescedBodyTooLarge for one that only turns out too large.
func WithCoalescing(on bool) Option {
	return func(t *Transport) { t.fx.coalesce, t.fx.coalesceSet = on, true }
}

// WithIgnoredQueryParams leaves the named query parameters out of the cache
// key, so that URLs that differ only in them share one entry: tokens that
// change on every call, or cache-busters such as "_". The request still goes
// to the origin with its full URL.
//
// Caveat: the origin's answer to one value is then served (or revalidated)
// for every other value. Never name a parameter that selects content, and
// never one that authorises: a response fetched with one token would be
// served to a request with another (the partition separates users only by
// Authorization, Cookie and URL user information, or WithPartition).
func WithIgnoredQueryParams(names ...string) Option {
	return func(t *Transport) { t.fx.ignoredQuery = append(t.fx.ignoredQuery, names...) }
}

func (t *Transport) coalescing() bool {
	if t.fx.coalesceSet {
		return t.fx.coalesce
	}
	return t.fx.cfg.enabled
}

func (t *Transport) now() time.Time {
	if t.fx.clock != nil {
		return t.fx.clock()
	}
	return time.Now()
}

// keyOf is requestKey without the ignored query parameters.
func (t *Transport) keyOf(req *http.Request) string {
	return t.stripIgnored(requestKey(req))
}

func (t *Transport) stripIgnored(key string) string {
	if len(t.fx.ignoredQuery) == 0 {
		return key
	}
	base, query, ok := strings.Cut(key, "?")
	if !ok {
		return key
	}
	kept := make([]string, 0, strings.Count(query, "&")+1)
	for _, p := range strings.Split(query, "&") {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil && slices.Contains(t.fx.ignoredQuery, n) {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return base
	}
	return base + "?" + strings.Join(kept, "&")
}

// memoryHit is get's fast path for the commonest answer of freshness mode, a
// fresh hit from a MemoryStore: the key is looked up without being built as
// a string, so the hit allocates only the response and its header map. When
// it finds the request's entry in the primary slot but the decision is
// other than serve, it returns that lookup and decision (found), which get
// goes on with instead of looking again; for anything else (a miss, another
// variant) it returns nothing, and get handles the request the usual way.
func (t *Transport) memoryHit(req *http.Request, h http.Header) (resp *http.Response, l lookup, d decision, found bool) {
	ms, ok := t.store.(*MemoryStore)
	if !ok || !t.fx.cfg.enabled || len(t.fx.ignoredQuery) > 0 {
		return nil, l, d, false
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		return nil, l, d, false
	}
	var buf [256]byte
	key := appendTargetKey(buf[:0], req.URL, req.Host)
	note := t.inval.now()
	part, vary := t.partitionFor(req, h)
	e := ms.getKeyBytes(key, part)
	if e == nil || !e.matches(part, vary, h) {
		return nil, l, d, false
	}
	var plain *freshConfig // set when the request says nothing about caching
	if !hasDirectives(ctx, h) {
		plain = &t.fx.cfg
		if hh := t.replay(e); hh != nil {
			return t.respond(req, e, hh), l, d, false
		}
	}
	d = decide(parseRequestDirectives(ctx, h), e, t.nowFor(e), t.fx.cfg)
	if d.action != actServe {
		l = lookup{key: string(key), part: part, h: h, vary: vary, entry: e, variant: part, primary: true, note: note}
		return nil, l, d, true
	}
	return t.respond(req, e, hitHeader(e, d.age, d.ttl, "", plain)), l, d, false
}

// nowFor is the time now, for judging e. An entry made in this process
// carries a monotonic reading, and the time since it is then one clock read
// instead of the two of time.Now: what decide reads of now is only that
// difference.
func (t *Transport) nowFor(e *Entry) time.Time {
	if e.ResponseTime.IsZero() {
		return t.now()
	}
	return e.ResponseTime.Add(t.residence(e))
}

// residence is how long e has been stored, by the Transport's clock.
func (t *Transport) residence(e *Entry) time.Duration {
	if t.fx.clock != nil {
		return t.now().Sub(e.ResponseTime)
	}
	return time.Since(e.ResponseTime)
}

// replay is replayHit for e now.
func (t *Transport) replay(e *Entry) http.Header {
	if e.ResponseTime.IsZero() {
		return nil
	}
	return replayHit(e, t.residence(e), t.fx.cfg)
}

// serveStored answers from the entry without the origin: a hit, a stale
// response within max-stale or stale-while-revalidate, or stale-if-error.
func (t *Transport) serveStored(req *http.Request, e *Entry, d decision, detail string) *http.Response {
	return t.respond(req, e, hitHeader(e, d.age, d.ttl, detail, nil))
}

// respond makes the response of a hit from e with the header h.
func (t *Transport) respond(req *http.Request, e *Entry, h http.Header) *http.Response {
	t.stats.hits.Add(1)
	t.stats.bytesServed.Add(int64(len(e.Body)))
	status := "200 OK"
	if e.Status != http.StatusOK {
		status = strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
	}
	// The response and its body reader come in one allocation.
	r := &struct {
		resp http.Response
		body storedBody
	}{}
	r.body.b = e.Body
	r.body.Reset(e.Body)
	r.resp = http.Response{
		Status:        status,
		StatusCode:    e.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          &r.body,
		ContentLength: int64(len(e.Body)),
		Request:       req,
	}
	return &r.resp
}

func atoiIs(s string, n int) bool {
	v, err := strconv.Atoi(s)
	return err == nil && v == n
}

// gatewayTimeout is the cache's own answer to only-if-cached when nothing
// usable is stored (RFC 9111 §5.2.1.7).
func gatewayTimeout(req *http.Request) *http.Response {
	return &http.Response{
		Status:     "504 Gateway Timeout",
		StatusCode: http.StatusGatewayTimeout,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Length":  {"0"},
			HeaderCacheStatus: {cacheName + "; detail=only-if-cached"},
		},
		Body:    http.NoBody,
		Request: req,
	}
}

// staleOnError serves the stale entry instead of an error (a 500, 502, 503
// or 504, or no answer) where the decision allows it (RFC 5861 §4,
// WithStaleIfError); the caller's own cancellation is never hidden.
func (t *Transport) staleOnError(req *http.Request, l lookup, d decision, resp *http.Response, err error) (*http.Response, error) {
	if !d.staleIfError || l.entry == nil || req.Context().Err() != nil {
		return resp, err
	}
	if err == nil && !originError(resp.StatusCode) {
		return resp, nil
	}
	if err == nil {
		discard(resp.Body)
	}
	// The error took time: age the entry to now.
	now := t.now()
	lifetime := d.ttl + d.age
	d.age = currentAge(l.entry, factsOf(l.entry), now)
	d.ttl = lifetime - d.age
	return t.serveStored(req, l.entry, d, "detail=stale-if-error"), nil
}

// forward does the decision's exchange with the origin, shared with the
// concurrent identical requests when coalescing is on.
func (t *Transport) forward(req *http.Request, l lookup, d decision) (*http.Response, error) {
	key, ok := t.flightKey(req, l, d)
	if !ok {
		resp, _, err := t.exchange(req, l, d)
		return resp, err
	}
	resp, led, err := t.fx.flights.do(req, key, t.maxSize, func(ctx context.Context) (*http.Response, func(*http.Request) bool, error) {
		resp, a, err := t.exchange(req.WithContext(ctx), l, d)
		if err != nil {
			return nil, nil, err
		}
		return resp, t.followers(a, &l, resp), nil
	})
	if errors.Is(err, errNotShared) {
		resp, _, err := t.exchange(req, l, d)
		return resp, err
	}
	if err != nil {
		return nil, err
	}
	resp.Request = req
	if !led {
		if vs := resp.Header[HeaderCacheStatus]; len(vs) > 0 {
			vs[len(vs)-1] += "; collapsed" // ours is the last member
		}
		t.stats.coalesced.Add(1)
	}
	return resp, nil
}

// flightKey names what a request shares with others: the resource, the
// partition, the variant and what is to be done. A request whose variant is
// not known yet (nothing stored that it matches) is identified by all its
// header fields instead, so that no Vary the origin might send can tell
// apart two requests that share a response.
func (t *Transport) flightKey(req *http.Request, l lookup, d decision) (string, bool) {
	if !t.coalescing() {
		return "", false
	}
	var b strings.Builder
	n := len(l.key) + len(l.part) + len(d.fwd) + 20 // 20: the action and the separators
	if l.entry != nil {
		n += len(l.variant) + len(l.entry.VaryDigest)
	} else {
		for k, vs := range l.h {
			n += len(k) + 1
			for _, v := range vs {
				n += len(v) + 1
			}
		}
	}
	b.Grow(n) // one allocation: it runs on every coalescable request
	b.WriteString(l.key)
	b.WriteByte(0)
	b.WriteString(l.part)
	b.WriteByte(0)
	b.WriteString(d.action.String())
	b.WriteByte(0)
	b.WriteString(d.fwd)
	b.WriteByte(0)
	if l.entry != nil {
		b.WriteString(l.variant)
		b.Write(l.entry.VaryDigest)
		return b.String(), true
	}
	names := make([]string, 0, len(l.h))
	for k := range l.h {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		b.WriteString(k)
		b.WriteByte(1)
		for _, v := range l.h[k] {
			b.WriteString(v)
			b.WriteByte(2)
		}
	}
	return b.String(), true
}

// worthStoring reports whether a response to a GET is worth keeping.
// Without freshness only 200 responses with a validator are: they are
// always revalidated, and one without a validator would never be served.
// With freshness, also responses of any final status the cache understands
// that have a freshness lifetime (explicit, or heuristic for the statuses
// that allow one), and responses with a validator of a heuristically
// cacheable status.
func (t *Transport) worthStoring(resp *http.Response) bool {
	validator := resp.Header.Get("Etag") != "" || validLastModified(resp.Header) != ""
	if !t.fx.cfg.enabled {
		return resp.StatusCode == http.StatusOK && validator
	}
	switch resp.StatusCode {
	case http.StatusPartialContent, http.StatusNotModified:
		return false
	}
	if resp.StatusCode < 200 || resp.StatusCode > 599 {
		return false
	}
	if heuristicallyCacheable(resp.StatusCode) && validator {
		return true
	}
	return hasLifetime(resp.Header, resp.StatusCode, t.now(), t.fx.cfg)
}

// impliedVary adds Accept-Encoding to the Vary names of a response stored
// in freshness mode whose content coding the request did not accept: the
// origin chose that coding for this Accept-Encoding, so the entry is served
// again to requests with the same one (a faithful replay), and never to a
// request with another, which might not decode it.
func (t *Transport) impliedVary(names []string, resp, req http.Header) []string {
	if !t.fx.cfg.enabled || acceptsCoding(req, resp) || slices.Contains(names, "Accept-Encoding") {
		return names
	}
	return append(slices.Clip(names), "Accept-Encoding")
}

// entryMatches reports whether e is the variant l's request selects.
func (t *Transport) entryMatches(e *Entry, l lookup) bool { return e.matches(l.part, l.vary, l.h) }

// noStore reports whether a response forbids storing it. With freshness,
// must-understand (RFC 9111 §5.2.2.3) overrides no-store for a status the
// cache understands, and forbids storing any other.
func (t *Transport) noStore(resp *http.Response) bool {
	if t.fx.cfg.enabled && hasDirective(resp.Header, "must-understand") {
		return !understood(resp.StatusCode)
	}
	return hasDirective(resp.Header, "no-store")
}

// understood are the final statuses whose caching rules this cache knows.
func understood(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// withoutNoCacheFields drops the fields a response names in no-cache="..."
// from what is stored: they may not be reused without validation, the rest
// may (RFC 9111 §5.2.2.4).
func withoutNoCacheFields(h http.Header) http.Header {
	fields := parseCacheControl(h).noCacheFields
	for _, f := range fields {
		delete(h, f)
	}
	return h
}
