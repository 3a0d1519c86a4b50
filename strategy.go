package etagcache

import (
	"net/http"
	"strings"
	"time"
)

// This file holds the cache's one decision, kept apart from the I/O around
// it (the split of OkHttp's CacheStrategy): given a request, the entry the
// store holds for it, the time and the configuration, what to do. decide
// reads no clock, no store and no network, so it is tested as a table
// against the rules of RFC 9111 and RFC 5861 (strategy_test.go).

// action is what the transport does with a request.
type action int

const (
	// actFetch: no usable entry; send the request as the caller made it.
	// A stored entry may still back a stale-if-error answer.
	actFetch action = iota
	// actRevalidate: send the request with the entry's validators.
	actRevalidate
	// actServe: answer from the entry without contacting the origin: it
	// is fresh, or stale within what the request's max-stale allows.
	actServe
	// actServeStale: answer from the stale entry at once and revalidate it
	// in the background (stale-while-revalidate, RFC 5861 §3).
	actServeStale
	// actGatewayTimeout: only-if-cached and nothing usable is stored; answer
	// 504 without contacting the origin (RFC 9111 §5.2.1.7).
	actGatewayTimeout
)

func (a action) String() string {
	switch a {
	case actFetch:
		return "fetch"
	case actRevalidate:
		return "revalidate"
	case actServe:
		return "serve"
	case actServeStale:
		return "serve-stale"
	case actGatewayTimeout:
		return "gateway-timeout"
	}
	return "?"
}

// freshConfig is the part of a Transport's configuration decide reads.
type freshConfig struct {
	enabled bool // WithFreshness
	// staleIfError is the stale-if-error window for responses that name
	// none (WithStaleIfError); 0 means none.
	staleIfError time.Duration
	// heuristicFraction of the time between Last-Modified and Date is the
	// lifetime of a response without an explicit one, capped at
	// heuristicCap (RFC 9111 §4.2.2).
	heuristicFraction float64
	heuristicCap      time.Duration
}

// Heuristic freshness, RFC 9111 §4.2.2: a tenth of the time since the last
// modification, as the RFC suggests, and never more than a day, so that a
// document unchanged for years is still looked at daily.
const (
	defaultHeuristicFraction = 0.1
	defaultHeuristicCap      = 24 * time.Hour
)

// decision is the outcome of decide.
type decision struct {
	action action
	// age is the entry's current age (RFC 9111 §4.2.3), sent as Age on a
	// response served from it; ttl its remaining freshness, negative once
	// stale (RFC 9211 §2.5).
	age, ttl time.Duration
	// etag and lastModified are the validators to send with actRevalidate.
	etag, lastModified string
	// staleIfError reports whether the entry may answer instead of an
	// error from the origin (RFC 5861 §4, or configuration): a 500, 502,
	// 503 or 504, or no answer.
	staleIfError bool
	// fwd is the Cache-Status reason for going forward: "stale" (the entry
	// needs validation) or "request" (the request asked for it).
	fwd string
}

// heuristicallyCacheable are the status codes whose responses may be given
// a heuristic lifetime (RFC 9110 §15.1).
func heuristicallyCacheable(status int) bool {
	switch status {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// decide chooses what to do with req given e, the entry stored for it (nil
// when none), at time now. Without freshness every stored entry is
// revalidated, as the transport always did; the request's only-if-cached
// and the context overrides work in both modes.
func decide(req requestDirectives, e *Entry, now time.Time, cfg freshConfig) decision {
	if e == nil {
		if req.onlyIfCached(cfg) {
			return decision{action: actGatewayTimeout}
		}
		return decision{action: actFetch}
	}
	d := decision{fwd: "stale"}
	f := factsOf(e)
	rcc := &f.cc
	d.age = currentAge(e, f, now)
	lifetime := freshnessLifetime(e.Status, f, cfg)
	d.ttl = lifetime - d.age
	staleness := -d.ttl

	switch {
	case req.onlyIfCached(cfg):
		// A refresh says the entry is wrong; the origin may not be asked.
		if !req.refresh && usableWithoutOrigin(&req, rcc, &d, staleness) {
			d.action = actServe
		} else {
			d.action = actGatewayTimeout
		}
		return d
	case req.refresh:
		return decision{action: actFetch, fwd: "request", age: d.age, ttl: d.ttl}
	}
	validators := func() bool {
		d.etag, d.lastModified = f.etag, f.validLM
		return d.etag != "" || d.lastModified != ""
	}
	revalidate := func(fwd string) decision {
		d.fwd = fwd
		d.action = actRevalidate
		validators()
		if d.etag == "" && d.lastModified == "" {
			d.action = actFetch // nothing to validate with: ask plainly
		}
		switch {
		case rcc.mustRevalidate || rcc.noCache: // never served stale (RFC 9111 §4.2.4)
		case cfg.enabled:
			d.staleIfError = within(staleness, rcc.staleIfError, cfg.staleIfError) ||
				within(staleness, req.cc.staleIfError, 0)
		default: // the default mode heeds only the configured window
			d.staleIfError = within(staleness, -1, cfg.staleIfError)
		}
		return d
	}
	switch {
	case !cfg.enabled:
		return revalidate("stale")
	case req.noCache():
		return revalidate("request")
	case rcc.noCache:
		return revalidate("stale")
	case usableWithoutOrigin(&req, rcc, &d, staleness):
		d.action = actServe
		return d
	case tooOld(&req, rcc, &d), req.cc.minFresh >= 0 && d.ttl < seconds(req.cc.minFresh):
		// The request wants fresher than we hold: not a case for serving
		// stale in the background.
		return revalidate("request")
	case d.ttl <= 0 && !rcc.mustRevalidate && rcc.staleWhileRevalidate >= 0 &&
		staleness <= seconds(rcc.staleWhileRevalidate) && validators():
		d.action = actServeStale
		return d
	}
	return revalidate("stale")
}

// originError reports whether an origin's status is one of the errors
// that stale-if-error may answer instead of (RFC 5861 §4, with no answer at
// all); any other, a 501 or a 505 too, is the origin's answer.
func originError(status int) bool {
	switch status {
	case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// preconditionAnswer is what a request that may not reach the origin gets
// from a stored response that decide allows to answer it, given the
// request's preconditions (header h, canonical keys; get is false for a
// HEAD): 200 for the stored response as it is, 304 when the request's own
// If-None-Match, or else If-Modified-Since, is false for it (RFC 9111
// §4.3.2, RFC 9110 §13.2.2), and 504 when a precondition only the origin may
// evaluate (If-Match, If-Unmodified-Since) or a Range with preconditions
// remains. Preconditions apply to a 2xx response only (RFC 9110 §13.2.1).
func preconditionAnswer(h http.Header, status int, f *entryFacts, get bool) int {
	if status < 200 || status > 299 {
		return http.StatusOK
	}
	if _, ok := h["If-Match"]; ok {
		return http.StatusGatewayTimeout
	}
	if _, ok := h["If-Unmodified-Since"]; ok {
		return http.StatusGatewayTimeout
	}
	if inm, ok := h["If-None-Match"]; ok {
		if listsTag(inm, f.etag) {
			return http.StatusNotModified
		}
	} else if ims := h["If-Modified-Since"]; len(ims) == 1 { // more members: ignored (RFC 9110 §13.1.3)
		lm := f.date // a response without Last-Modified is judged by its Date (RFC 9111 §4.3.2)
		if f.lastModifiedOK {
			lm = f.lastModified
		}
		if since, ok := httpDate(ims[0]); ok && !lm.After(since) {
			return http.StatusNotModified
		}
	}
	if _, ok := h["Range"]; ok && get {
		return http.StatusGatewayTimeout
	}
	return http.StatusOK
}

// listsTag reports whether If-None-Match field lines name etag, by weak
// comparison (RFC 9110 §13.1.2), or are "*", which any stored response
// matches. Parsing stops at the first malformed member of a line.
func listsTag(lines []string, etag string) bool {
	for _, s := range lines {
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			rest := strings.TrimPrefix(s, "W/")
			if !strings.HasPrefix(rest, `"`) {
				break
			}
			end := strings.IndexByte(rest[1:], '"') + 2 // past the closing quote
			if end < 2 {
				break
			}
			if weakMatch(rest[:end], etag) {
				return true
			}
			s = rest[end:]
		}
	}
	return false
}

// usableWithoutOrigin reports whether the entry may answer req without
// validation: fresh enough for the request's max-age and min-fresh, or
// stale within its max-stale where the response does not forbid serving
// stale (RFC 9111 §4.2.4, §5.2.1).
func usableWithoutOrigin(req *requestDirectives, rcc *cacheControl, d *decision, staleness time.Duration) bool {
	if rcc.noCache || req.noCache() {
		return false
	}
	if tooOld(req, rcc, d) {
		return false
	}
	if req.cc.minFresh >= 0 && d.ttl < seconds(req.cc.minFresh) {
		return false
	}
	if d.ttl > 0 {
		return true
	}
	return !rcc.mustRevalidate && req.cc.maxStale >= 0 && staleness <= seconds(req.cc.maxStale)
}

// tooOld reports whether the entry is older than the request's max-age
// allows. A fresh immutable response (RFC 8246) ignores it: max-age=0 is what
// a reload sends, and immutable says a reload need not ask; an explicit
// no-cache (a forced reload) is still honoured.
func tooOld(req *requestDirectives, rcc *cacheControl, d *decision) bool {
	if rcc.immutable && d.ttl > 0 {
		return false
	}
	return req.cc.maxAge >= 0 && d.age > seconds(req.cc.maxAge)
}

// within reports whether staleness lies inside a window given in seconds
// (-1: none), or else inside the configured fallback window.
func within(staleness time.Duration, window int64, fallback time.Duration) bool {
	if window >= 0 {
		return staleness <= seconds(window)
	}
	return fallback > 0 && staleness <= fallback
}

func seconds(n int64) time.Duration { return time.Duration(n) * time.Second }

// deltaCap is where ages and lifetimes saturate: 2^31 seconds (RFC 9111
// §1.2.2). A sum of two stays well inside time.Duration, whereas adding to
// time.Time.Sub's own saturation (about 292 years) would overflow.
const deltaCap = maxDelta * time.Second

// span is the time from a to b, within [0, deltaCap].
func span(a, b time.Time) time.Duration { return min(max(0, b.Sub(a)), deltaCap) }

// currentAge computes the age of a stored response now (RFC 9111 §4.2.3):
//
//	apparent_age = max(0, response_time - date_value)
//	corrected_age_value = age_value + (response_time - request_time)
//	corrected_initial_age = max(apparent_age, corrected_age_value)
//	current_age = corrected_initial_age + (now - response_time)
//
// where date_value is the response's Date (or its time of receipt, when it
// has no valid Date). Every term saturates at deltaCap, so does the result,
// which is rounded down to whole seconds, the resolution of the fields
// involved.
func currentAge(e *Entry, f *entryFacts, now time.Time) time.Duration {
	return ageAt(f, now.Sub(e.ResponseTime))
}

// ageAt is the current age of a response resident for the given time.
func ageAt(f *entryFacts, resident time.Duration) time.Duration {
	return min(f.initialAge+min(max(0, resident), deltaCap), deltaCap).Truncate(time.Second)
}

// freshnessLifetime is how long the response is fresh after it was
// generated (RFC 9111 §4.2.1): max-age, else Expires minus Date (an invalid
// Expires is already expired, §5.3), else a heuristic for a response with
// Last-Modified and a status that allows it (§4.2.2); never more than
// deltaCap. s-maxage is for shared caches; we are a private one and ignore
// it.
func freshnessLifetime(status int, f *entryFacts, cfg freshConfig) time.Duration {
	if f.cc.maxAge >= 0 {
		return seconds(f.cc.maxAge)
	}
	if f.expiresSet {
		if !f.expiresOK {
			return 0
		}
		return span(f.date, f.expires)
	}
	if !heuristicallyCacheable(status) {
		return 0
	}
	lm := f.lastModified
	if !f.lastModifiedOK || !lm.Before(f.date) {
		return 0
	}
	h := deltaCap
	if v := float64(f.date.Sub(lm)) * cfg.heuristicFraction; v < float64(deltaCap) {
		h = time.Duration(v)
	}
	if cfg.heuristicCap > 0 {
		h = min(h, cfg.heuristicCap)
	}
	return h.Truncate(time.Second)
}

// hasLifetime reports whether a response has a freshness lifetime of its
// own (max-age or Expires) or a heuristic one, so that freshness mode may
// store it even without a validator.
func hasLifetime(h http.Header, status int, now time.Time, cfg freshConfig) bool {
	f := parseFacts(&Entry{Status: status, Header: h, RequestTime: now, ResponseTime: now})
	return freshnessLifetime(status, &f, cfg) > 0
}
