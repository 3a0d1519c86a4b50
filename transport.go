// Package etagcache provides an http.RoundTripper that revalidates instead
// of refetching.
//
// The Transport remembers the validators (ETag, Last-Modified) and body of
// every storable response to a GET, sends them back as If-None-Match and
// If-Modified-Since on the next GET of the same resource, and when the origin
// answers 304 Not Modified it hands the caller the stored body, with the
// 304's updated header fields, as an ordinary 200. Every GET still goes to
// the origin: the transport never serves a response without revalidating it,
// so it is always as fresh as the origin says, but it costs a few hundred
// bytes instead of the whole document (and, on many APIs, no rate limit).
//
// Entries live in a Store: MemoryStore for one process, BoltStore for a file
// that outlives it, or any other implementation.
package etagcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultMaxEntrySize is the largest body a Transport stores unless
// WithMaxEntrySize says otherwise.
const DefaultMaxEntrySize = 16 << 20

// ErrUnexpectedNotModified is returned by RoundTrip when the origin answers
// 304 Not Modified to a request that carried no precondition: passing it on
// would hand the caller a response without a body that it never asked for.
var ErrUnexpectedNotModified = errors.New("etagcache: origin answered 304 to an unconditional request")

// Transport is an http.RoundTripper that adds validators from its Store to
// GET requests and turns the origin's 304 answers into 200 responses with
// the stored body. It is safe for concurrent use.
//
// Every response to a GET that it handles carries a Cache-Status field
// (RFC 9211) naming "etagcache"; ResultOf reads it. X-From-Cache: 1 marks a
// response for which the origin was not contacted at all. A revalidated
// response does not carry it: its header fields are the origin's, fresh
// from the 304, so that clients which skip X-From-Cache responses (such as
// go-github's rate-limit tracking) follow the origin.
type Transport struct {
	store       Store
	base        http.RoundTripper
	log         *slog.Logger
	maxSize     int64
	partitionOf func(*http.Request) string // nil: the credential digest
	warnedBelow atomic.Bool
	weakCoded   keySet // resources whose coded weak-tagged bodies are not worth storing
	stats       counters
	inval       invalidations // so that a write's invalidation wins (invalidate.go)
	fx          freshState    // freshness, coalescing and key options (transport_fresh.go)
}

// Option configures a Transport.
type Option func(*Transport)

// WithBase sets the transport that really sends requests. The default (also
// for nil) is http.DefaultTransport.
//
// A base that adds credentials itself (an oauth2.Transport, say) hides them
// from the cache, which would then key every user's responses alike. The
// Transport notices such credentials on the request the base really sent,
// and neither stores nor merges those responses (it logs one warning). Two
// layouts keep the cache both safe and useful: put the authenticating
// transport above the cache (&oauth2.Transport{Base: cacheTransport}), or
// keep it below and name the user with WithPartition.
func WithBase(rt http.RoundTripper) Option {
	return func(t *Transport) { t.base = rt }
}

// WithLogger sets where store failures are reported (at Warn level). The
// default, also for nil, is slog.Default(). To discard the messages, pass
// slog.New(slog.DiscardHandler): store failures are then seen only in
// Stats().StoreErrors.
func WithLogger(l *slog.Logger) Option {
	return func(t *Transport) { t.log = l }
}

// WithMaxEntrySize sets the largest body that is stored, in bytes. Larger
// bodies stream through to the caller and are not stored; no more than n
// bytes of one body are ever buffered. As for every size in this module, 0
// means the default, DefaultMaxEntrySize, and a negative n means no limit
// (a body of any size is buffered and stored: only the store's own bound
// applies).
func WithMaxEntrySize(n int64) Option {
	return func(t *Transport) { t.maxSize = n }
}

// WithPartition sets the function that says which user a request belongs
// to. Entries of one partition are never served to another. The value is
// hashed before it names anything in the store; "" is the partition of
// anonymous requests.
//
// By default the partition is a digest of the request's credentials
// (Authorization, Cookie, Proxy-Authorization and URL user information), so
// one user's body can never reach another; but every new token or session
// cookie starts with a cold cache and leaves the old entries behind. A
// function that returns a stable identity (an account or installation ID,
// not the token) keeps the cache warm across token rotation and rolling
// cookies. The trade-off is that the function is then trusted: two requests
// it puts in one partition share entries whatever credentials they carry,
// and credentials added by the base transport are taken as accounted for.
func WithPartition(f func(*http.Request) string) Option {
	return func(t *Transport) { t.partitionOf = f }
}

// NewTransport returns a Transport that keeps its entries in store.
//
// A nil store (or a nil pointer of a store type, such as the *BoltStore of
// a failed OpenBoltStore) is a mistake that NewTransport reports at once,
// with one Error line on the logger, and works around: the Transport then
// keeps its entries in a NewMemoryStore(0), so the program goes on with a
// cache that does not outlive it, rather than failing on its first request.
func NewTransport(store Store, opts ...Option) *Transport {
	t := &Transport{store: store, base: http.DefaultTransport, log: slog.Default()}
	t.fx.cfg.heuristicFraction, t.fx.cfg.heuristicCap = defaultHeuristicFraction, defaultHeuristicCap
	for _, o := range opts {
		o(t)
	}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if t.log == nil {
		t.log = slog.Default()
	}
	switch {
	case t.maxSize == 0:
		t.maxSize = DefaultMaxEntrySize
	case t.maxSize < 0:
		t.maxSize = math.MaxInt64
	}
	if isNil(store) {
		t.log.Error("etagcache: NewTransport was given a nil Store; keeping entries in memory instead (NewMemoryStore(0))",
			"store", fmt.Sprintf("%T", store))
		t.store = NewMemoryStore(0)
	}
	return t
}

// Client returns an http.Client that sends its requests through t.
func (t *Transport) Client() *http.Client {
	return &http.Client{Transport: t}
}

// CloseIdleConnections closes the idle connections of the base transport,
// when it has such a method (http.Client.CloseIdleConnections relies on it).
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Stats are the counters of a Transport since it was made.
type Stats struct {
	Requests    int64 // requests passed to RoundTrip
	Stored      int64 // responses written to the store
	Revalidated int64 // 304 answers turned into a 200 from the store
	Changed     int64 // 200 answers to a conditional request the transport made
	Bypassed    int64 // requests sent on without consulting the store
	StoreErrors int64 // store calls that failed (the requests went on)
	BytesServed int64 // body bytes served from the store
	Hits        int64 // responses served from the store without contacting the origin
	Coalesced   int64 // requests that shared another request's origin exchange
}

type counters struct {
	requests, stored, revalidated, changed, bypassed, storeErrors, bytesServed, hits, coalesced atomic.Int64
}

// Stats returns the transport's counters.
func (t *Transport) Stats() Stats {
	c := &t.stats
	return Stats{
		Requests: c.requests.Load(), Stored: c.stored.Load(), Revalidated: c.revalidated.Load(),
		Changed: c.changed.Load(), Bypassed: c.bypassed.Load(), StoreErrors: c.storeErrors.Load(),
		BytesServed: c.bytesServed.Load(), Hits: c.hits.Load(), Coalesced: c.coalesced.Load(),
	}
}

// RoundTrip implements http.RoundTripper. The request is never modified.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.stats.requests.Add(1)
	switch req.Method {
	case http.MethodGet, "":
	case http.MethodHead, http.MethodOptions, http.MethodTrace:
		if h := canonicalHeader(req.Header); t.onlyIfCached(req.Context(), h) {
			return t.cachedOnly(req, h)
		}
		t.stats.bypassed.Add(1)
		return t.base.RoundTrip(req)
	default:
		if h := canonicalHeader(req.Header); t.onlyIfCached(req.Context(), h) {
			return t.cachedOnly(req, h)
		}
		return t.unsafe(req)
	}
	h := canonicalHeader(req.Header)
	body := req.Body != nil && req.Body != http.NoBody
	fields := len(h) > 0 // the commonest GET has none: nothing to look for
	bypass := body || (fields && hasDirective(h, "no-store")) || withoutStore(req.Context())
	if t.fx.cfg.enabled && !bypass && fields && plainRange(h) {
		return t.getRange(req, h)
	}
	if bypass || (fields && hasConditional(h)) {
		if t.onlyIfCached(req.Context(), h) {
			return t.cachedOnly(req, h)
		}
		t.stats.bypassed.Add(1)
		resp, err := t.send(req)
		if err != nil {
			return nil, err
		}
		addCacheStatus(resp.Header, "fwd=bypass")
		return resp, nil
	}
	return t.get(req, h)
}

// send passes a request to the base transport and makes its answer safe to
// work on: a response, with a header map whose keys are canonical.
func (t *Transport) send(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp == nil {
		return nil, errors.New("etagcache: base transport returned neither a response nor an error")
	}
	if resp.Header == nil {
		resp.Header = make(http.Header)
	} else {
		resp.Header = canonicalHeader(resp.Header)
	}
	return resp, nil
}

// lookup is what the store holds for one GET request.
type lookup struct {
	key, part string
	h         http.Header // the request's header, canonical keys
	vary      http.Header // what Vary values are read from: h, less credentials under a hook
	secondary string      // where a variant other than the primary's lives
	entry     *Entry      // the variant matching the request, or nil
	variant   string      // where entry lives
	primary   bool        // whether the partition's primary slot holds any entry
	fwd       string      // Cache-Status reason when entry is nil
	note      uint64      // the invalidation sequence before the store was read
}

// find looks a request up. Variants of a resource for one partition live in
// a primary slot (the first stored) and, when Vary or content coding sets
// them apart, in slots named by their Vary digest, computed with the
// primary's Vary names. So a request costs one store read, or two when it
// wants another variant.
func (t *Transport) find(ctx context.Context, req *http.Request, h http.Header) (lookup, error) {
	l := lookup{key: t.keyOf(req), h: h, fwd: "uri-miss", note: t.inval.now()}
	l.part, l.vary = t.partitionFor(req, h)
	e, err := t.storeGet(ctx, l.key, l.part)
	if e == nil {
		return l, err
	}
	l.primary = true
	if e.matches(l.part, l.vary, h) {
		l.entry, l.variant = e, l.part
		return l, nil
	}
	l.fwd = "vary-miss"
	l.secondary = derivedVariant(l.part, varyDigest(l.part, e.VaryNames, l.vary))
	e, err = t.storeGet(ctx, l.key, l.secondary)
	if e != nil && e.matches(l.part, l.vary, h) {
		l.entry, l.variant = e, l.secondary
	}
	return l, err
}

// partitionFor returns the partition of a request with header h, and the
// header its Vary values are read from.
func (t *Transport) partitionFor(req *http.Request, h http.Header) (string, http.Header) {
	if t.partitionOf != nil {
		return hookPartition(t.partitionOf(req)), withoutCredentials(h)
	}
	return partition(h, req.URL), h
}

// storeGet reads one entry. Store failures are logged and read as a miss;
// only the caller's own cancellation is returned.
func (t *Transport) storeGet(ctx context.Context, key, variant string) (*Entry, error) {
	e, err := t.store.Get(ctx, key, variant)
	switch {
	case err == nil && (e == nil || e.Status < 100 || e.Status > 999):
		err = ErrCorruptEntry
	case err == nil:
		return e, nil
	case errors.Is(err, ErrNotFound):
		return nil, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	t.storeFailed(ctx, "get", key, err)
	if errors.Is(err, ErrCorruptEntry) {
		t.storeDelete(ctx, key)
	}
	return nil, nil
}

func (t *Transport) storeDelete(ctx context.Context, key string) {
	if err := t.store.Delete(ctx, key); err != nil {
		t.storeFailed(ctx, "delete", key, err)
	}
}

func (t *Transport) storeFailed(ctx context.Context, op, key string, err error) {
	t.stats.storeErrors.Add(1)
	// Keys are URLs: their query strings may hold tokens, so logs get them redacted.
	t.log.WarnContext(ctx, "etagcache: store failed; going on without it", "op", op, "key", redactKey(key), "err", redactErr(err, key))
}

// get serves a GET request through the store: look it up, decide what to
// do (strategy.go), then serve from the store or ask the origin.
func (t *Transport) get(req *http.Request, h http.Header) (*http.Response, error) {
	resp, l, d, found := t.memoryHit(req, h)
	if resp != nil {
		return resp, nil
	}
	if !found {
		ctx := req.Context()
		var err error
		if l, err = t.find(ctx, req, h); err != nil {
			return nil, err
		}
		rd := parseRequestDirectives(ctx, h)
		d = decide(rd, l.entry, t.now(), t.fx.cfg)
		if l.entry == nil && t.fx.cfg.enabled {
			// Before only-if-cached's 504: a stored part may be the whole.
			if resp, ok, err := t.complete(req, l, rd); ok {
				return resp, err
			}
		}
	}
	switch d.action {
	case actServe:
		return t.serveStored(req, l.entry, d, ""), nil
	case actServeStale:
		if t.refreshInBackground(req, l, d) {
			return t.serveStored(req, l.entry, d, "detail=stale-while-revalidate"), nil
		}
		d.action = actRevalidate // the Transport is closed: no background work
	case actGatewayTimeout:
		return gatewayTimeout(req), nil
	}
	resp, err := t.forward(req, l, d)
	return t.staleOnError(req, l, d, resp, err)
}

// exchange asks the origin what the decision says: the request as it was
// made (actFetch), or with the entry's validators (actRevalidate). The
// admission says whether the answer may also go to other callers.
func (t *Transport) exchange(req *http.Request, l lookup, d decision) (*http.Response, admission, error) {
	ctx := req.Context()
	if l.entry == nil {
		return t.fetch(req, l, "fwd="+l.fwd, false)
	}
	fwd := "fwd=" + d.fwd
	if d.action == actFetch {
		return t.fetch(req, l, fwd, true)
	}
	if t.unconfirmable(l.key, l.entry.Header) {
		return t.fetch(req, l, fwd+"; detail=coded-etag-mismatch", true)
	}

	// A shallow copy with a header map of its own: the base transport reads
	// but never modifies the rest, and the caller's request stays as it was.
	cond := new(http.Request)
	*cond = *req
	cond.Header = make(http.Header, len(req.Header)+2)
	for k, vs := range req.Header {
		cond.Header[k] = vs
	}
	vs := []string{d.etag, d.lastModified} // one allocation for both fields
	if d.etag != "" {
		cond.Header["If-None-Match"] = vs[0:1:1]
	}
	if d.lastModified != "" {
		cond.Header["If-Modified-Since"] = vs[1:2:2]
	}
	sent := t.now()
	resp, err := t.send(cond)
	if err != nil {
		return nil, admission{}, err
	}
	if resp.StatusCode != http.StatusNotModified {
		if resp.StatusCode == http.StatusOK {
			t.stats.changed.Add(1)
		}
		return t.stored(req, cond, l, resp, sent, fwd+"; fwd-status="+strconv.Itoa(resp.StatusCode), true)
	}
	if t.unaccounted(ctx, cond, resp) {
		// Whose representation this 304 confirms is unknown.
		discard(resp.Body)
		return t.fetch(req, l, fwd+"; detail=credentials-below-cache", true)
	}
	discard(resp.Body)

	if _, star := varyNames(resp.Header); star {
		// Vary: * matches no request (RFC 9111 §4.1): the entry is useless.
		t.storeDelete(ctx, l.key)
		return t.fetch(req, l, fwd+"; detail=vary-star", true)
	}
	if why := unconfirmed(l.entry.Header, resp.Header); why != "" {
		if why == "coded-etag-mismatch" {
			// nginx and others answer with the identity's strong tag: such
			// an entry will never be confirmed, so stop storing it.
			t.weakCoded.add(l.key)
		}
		// The 304 confirms a representation we do not hold: never splice
		// its header onto this body (RFC 9111 §4.3.4). Ask again, plainly.
		return t.fetch(req, l, fwd+"; detail="+why, true)
	}
	out, a := t.revalidated(req, l, resp, sent, fwd)
	return out, a, nil
}

// fetch sends the caller's request unchanged and stores the answer if it
// may be stored.
func (t *Transport) fetch(req *http.Request, l lookup, status string, stale bool) (*http.Response, admission, error) {
	sent := t.now()
	resp, err := t.send(req)
	if err != nil {
		return nil, admission{}, err
	}
	if stale {
		status += "; fwd-status=" + strconv.Itoa(resp.StatusCode)
	}
	return t.stored(req, req, l, resp, sent, status, stale)
}

// passOn hands the caller a response that is not stored.
func (t *Transport) passOn(req *http.Request, resp *http.Response, status string) *http.Response {
	resp.Request = req
	addCacheStatus(resp.Header, status)
	return resp
}

// stored finishes a response that came with a body from the origin, in
// answer to sent (the caller's req, or a request made from it): it arranges
// for the body to be stored, if admit allows, when the caller has read all
// of it, and drops a stale entry that the response shows to be useless.
func (t *Transport) stored(req, sent *http.Request, l lookup, resp *http.Response, at time.Time, status string, stale bool) (*http.Response, admission, error) {
	if resp.StatusCode == http.StatusNotModified {
		// We sent no precondition this time, so this 304 is nobody's.
		discard(resp.Body)
		return nil, admission{}, ErrUnexpectedNotModified
	}
	ctx := req.Context()
	a := t.admit(ctx, &l, sent, resp)
	if a.detail != "" && !strings.Contains(status, "detail=") {
		status += "; detail=" + a.detail
	}
	if !a.store {
		if stale && a.detail == "" && resp.StatusCode == http.StatusOK {
			t.storeDelete(ctx, l.key)
		}
		return t.passOn(req, resp, status), a, nil
	}
	if t.unconfirmable(l.key, resp.Header) || (!t.fx.cfg.enabled && sameStrongTag(l.entry, resp.Header)) {
		// (With freshness the write renews the entry's lifetime.)
		// Not worth a write, and the entries beside it stay as they are.
		return t.passOn(req, resp, status), a, nil
	}
	e := &Entry{
		Status:       resp.StatusCode,
		Header:       withoutNoCacheFields(storedHeader(resp.Header)),
		VaryNames:    a.names,
		VaryDigest:   a.digest[:],
		RequestTime:  at,
		ResponseTime: t.now(),
	}
	receiptDate(e.Header, resp.Header, e.ResponseTime) // RFC 9110 §6.6.1
	t.storeAtEOF(ctx, resp, l.key, a.variant, l.note, e)
	return t.passOn(req, resp, status+"; stored"), a, nil
}

// storeAtEOF arranges for e, with resp's body, to be put in the store
// under key and variant once the caller has read that body to its end,
// unless key was invalidated after note.
func (t *Transport) storeAtEOF(ctx context.Context, resp *http.Response, key, variant string, note uint64, e *Entry) {
	cp, withSum := t.store.(checksumPutter)
	var sb *storingBody
	sb = newStoringBody(ctx, resp.Body, resp.ContentLength, t.maxSize, func(body []byte) {
		e.Body = body
		wrote, err := t.guardedWrite(ctx, key, note, func() error {
			if withSum {
				return cp.putChecksummed(ctx, key, variant, e, sb.checksum())
			}
			return t.store.Put(ctx, key, variant, e)
		})
		if err != nil {
			if ctx.Err() == nil {
				t.storeFailed(ctx, "put", key, err)
			}
			return
		}
		if wrote {
			t.stats.stored.Add(1)
		}
	})
	sb.withSum = withSum
	resp.Body = sb
}

// revalidated builds the caller's 200 from a stored entry and the 304 that
// confirmed it, and persists the 304's header fields.
func (t *Transport) revalidated(req *http.Request, l lookup, nm *http.Response, sent time.Time, fwd string) (*http.Response, admission) {
	ctx := req.Context()
	old := l.entry
	merged := mergeHeader(old.Header, nm.Header, 3)
	receiptDate(merged, nm.Header, t.now())
	switch {
	case hasDirective(nm.Header, "no-store"): // a stored entry never had it
		t.storeDelete(ctx, l.key)
	case !onlyDateMoved(old.Header, nm.Header) || t.renewable(old): // with freshness, a 304 renews the lifetime (RFC 9111 §4.3.4)
		t.persist(ctx, l, old, withoutNoCacheFields(merged.Clone()), sent)
	}

	t.stats.revalidated.Add(1)
	t.stats.bytesServed.Add(int64(len(old.Body)))
	// The fields we add share one array. Set-Cookie is the 304's: it is
	// for this caller, never stored and never replayed.
	added := []string{strconv.Itoa(len(old.Body)), cacheStatus(nm.Header, fwd+"; fwd-status=304")}
	if lengthless(old.Status) {
		delete(merged, "Content-Length")
	} else {
		merged["Content-Length"] = added[0:1:1]
	}
	merged[HeaderCacheStatus] = added[1:2:2]
	if sc := nm.Header["Set-Cookie"]; len(sc) > 0 {
		merged["Set-Cookie"] = sc
	}
	a := admission{share: len(nm.Header["Set-Cookie"]) == 0 && len(nm.Header["Set-Cookie2"]) == 0 && !hasDirective(nm.Header, "no-store"), lazy: true}
	status := "200 OK"
	if old.Status != http.StatusOK {
		status = strconv.Itoa(old.Status) + " " + http.StatusText(old.Status)
	}
	return &http.Response{
		Status:        status,
		StatusCode:    old.Status,
		Proto:         nm.Proto,
		ProtoMajor:    nm.ProtoMajor,
		ProtoMinor:    nm.ProtoMinor,
		Header:        merged,
		Body:          newStoredBody(old.Body),
		ContentLength: int64(len(old.Body)),
		Request:       req,
		TLS:           nm.TLS,
	}, a
}

// renewable reports whether renewing the stored response e's age, as a
// 304 that changed nothing but Date does in freshness mode, could let it
// answer without the origin: it has a lifetime, or a window in which it may
// be served stale. One that is revalidated every time whatever its age
// (no-cache, or no lifetime and no such window) gains nothing from a write,
// so none is made. Such a 304 leaves every field but Date as stored, so
// e's facts (parsed once per entry) answer, but for the lifetimes that
// Date moves (Expires, the heuristic): those count as renewable.
func (t *Transport) renewable(e *Entry) bool {
	if !t.fx.cfg.enabled {
		return false
	}
	f := factsOf(e)
	switch {
	case f.cc.noCache:
		return false
	case f.cc.staleWhileRevalidate > 0 || f.cc.staleIfError > 0 || t.fx.cfg.staleIfError > 0:
		return true
	case f.cc.maxAge >= 0:
		return f.cc.maxAge > 0
	}
	return f.expiresSet || (f.lastModifiedOK && heuristicallyCacheable(e.Status))
}

// persist writes a revalidated entry's new header: through HeaderUpdater
// when the store has it, so the body is not rewritten, else by a full Put.
func (t *Transport) persist(ctx context.Context, l lookup, old *Entry, header http.Header, sent time.Time) {
	e := *old
	e.Header = header
	e.RequestTime, e.ResponseTime = sent, t.now()
	if names, _ := varyNames(header); !slices.Equal(names, old.VaryNames) {
		// Vary changed under a 304: keep the entry where it is, filed under
		// the new names, so the next lookup matches it afresh.
		if names = t.impliedVary(names, header, l.h); !slices.Equal(names, old.VaryNames) {
			d := varyDigest(l.part, names, l.vary)
			e.VaryNames, e.VaryDigest = names, d[:]
		}
	}
	// e.Body is old's: a HeaderUpdater writes only onto that very body.
	_, err := t.guardedWrite(ctx, l.key, l.note, func() error {
		if hu, ok := t.store.(HeaderUpdater); ok {
			return hu.UpdateHeader(ctx, l.key, l.variant, &e)
		}
		return t.store.Put(ctx, l.key, l.variant, &e)
	})
	if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
		t.storeFailed(ctx, "update", l.key, err)
	}
}
