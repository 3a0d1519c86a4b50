package etagcache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// hopByHop are the fields that describe one connection, not the response
// (RFC 9110 §7.6.1), plus the proxy authentication fields that RFC 9111 §3.1
// forbids storing.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Proxy-Authenticate",
	"Proxy-Authentication-Info", "Proxy-Authorization",
}

// notFrom304 are the fields a 304 must not change in a stored response: its
// length, and what the stored body depends on (RFC 9111 §3.2).
var notFrom304 = []string{"Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding"}

// connectionNamed reports whether name is hop-by-hop for this response: in
// the fixed list or named by its Connection field.
func connectionNamed(h http.Header, name string) bool {
	if slices.Contains(hopByHop, name) {
		return true
	}
	for _, line := range h["Connection"] {
		for _, f := range strings.Split(line, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == name {
				return true
			}
		}
	}
	return false
}

// exchangeOnly are fields that describe one exchange, not the stored
// response: replaying them after a 304 would misreport the new exchange.
// Cache-Status and X-From-Cache are never stored; Age is stored (freshness
// needs it) but a 304 supersedes it.
func exchangeOnly(k string) bool {
	return k == HeaderCacheStatus || k == HeaderFromCache
}

// storedHeader returns the part of a response header that may be stored:
// everything except hop-by-hop fields, Set-Cookie and the fields that
// describe only this exchange.
func storedHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if connectionNamed(h, k) || k == "Set-Cookie" || k == "Set-Cookie2" || exchangeOnly(k) {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// mergeHeader applies a 304's header to a stored one (RFC 9111 §3.2): every
// field of the 304 replaces or adds, except hop-by-hop fields, Set-Cookie and
// the fields in notFrom304. The stored Age and the fields of the first
// exchange are dropped: the 304 is the exchange that counts now. The result
// shares nothing with stored; it does share value slices with notModified,
// which belongs to a 304 that is discarded. Room is made for extra more
// fields.
func mergeHeader(stored, notModified http.Header, extra int) http.Header {
	n := 0
	for _, vs := range stored {
		n += len(vs)
	}
	values := make([]string, n)                 // one array behind all the stored values
	out := make(http.Header, len(stored)+extra) // a 304 mostly replaces fields
	for k, vs := range stored {
		if k == "Age" || exchangeOnly(k) {
			continue
		}
		m := copy(values, vs)
		out[k] = values[:m:m]
		values = values[m:]
	}
	for k, vs := range notModified {
		if mergeable(notModified, k) {
			out[k] = vs
		}
	}
	return out
}

// receiptDate gives a merged header the time of receipt as its Date when
// the response merged in carried none (RFC 9110 §6.6.1): the stored Date
// would date the renewed response from the first exchange.
func receiptDate(merged, received http.Header, now time.Time) {
	if received.Get("Date") == "" {
		merged["Date"] = []string{now.UTC().Format(http.TimeFormat)}
	}
}

func mergeable(notModified http.Header, k string) bool {
	return !connectionNamed(notModified, k) && !slices.Contains(notFrom304, k) &&
		k != "Set-Cookie" && k != "Set-Cookie2" && !exchangeOnly(k)
}

// onlyDateMoved reports whether merging notModified into stored changes
// nothing but Date and Age, the fields every 304 moves. Such a revalidation
// is not persisted.
func onlyDateMoved(stored, notModified http.Header) bool {
	for k, vs := range notModified {
		if k == "Date" || k == "Age" || !mergeable(notModified, k) {
			continue
		}
		if !slices.Equal(stored[k], vs) {
			return false
		}
	}
	return true
}

// hasDirective reports whether the Cache-Control fields of h carry the
// directive name (case-insensitive, with or without an argument).
func hasDirective(h http.Header, name string) bool {
	for _, line := range h["Cache-Control"] {
		for line != "" {
			var d string
			d, line, _ = strings.Cut(line, ",")
			d, _, _ = strings.Cut(d, "=")
			if strings.EqualFold(strings.TrimSpace(d), name) {
				return true
			}
		}
	}
	return false
}

// canonicalHeader returns h when all its keys are canonical, else a copy
// with canonical keys whose values are joined in key order. net/http sends
// a field under whatever key the caller used, so the cache must read
// "authorization" or "if-none-match" as the fields they are.
func canonicalHeader(h http.Header) http.Header {
	if len(h) == 0 {
		return h // the commonest GET: skip starting a range over the map
	}
	for k := range h {
		if http.CanonicalHeaderKey(k) != k {
			return canonicalCopy(h)
		}
	}
	return h
}

func canonicalCopy(h http.Header) http.Header {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys) // so that the joined values have a stable order
	out := make(http.Header, len(h))
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], h[k]...)
	}
	return out
}

// acceptsCoding reports whether a request with header req (canonical keys)
// accepts every content coding of a stored response. The caller's own
// Accept-Encoding is what counts: net/http's transparent gzip decodes only
// responses that it received itself, never a body served from the store.
func acceptsCoding(req, stored http.Header) bool {
	return acceptsCodings(req, stored["Content-Encoding"])
}

// acceptsCodings is acceptsCoding of the Content-Encoding field lines given.
func acceptsCodings(req http.Header, contentEncoding []string) bool {
	for _, line := range contentEncoding {
		for _, c := range strings.Split(line, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			if c != "" && c != "identity" && !acceptsOne(req["Accept-Encoding"], c) {
				return false
			}
		}
	}
	return true
}

// acceptsOne reads Accept-Encoding (RFC 9110 §12.5.3): the coding named with
// a non-zero weight, or "*" when the coding is not named at all.
func acceptsOne(accept []string, coding string) bool {
	star := false
	for _, line := range accept {
		for _, m := range strings.Split(line, ",") {
			name, params, _ := strings.Cut(m, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			ok := qNonZero(params)
			switch {
			case name == coding || name == "x-"+coding || "x-"+name == coding:
				return ok
			case name == "*":
				star = ok
			}
		}
	}
	return star
}

func qNonZero(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q > 0
		}
	}
	return true
}

// unconfirmed says why a 304 does not confirm the stored response that was
// validated, or "" when it does (RFC 9111 §4.3.4). A tag on the 304 must
// match the stored one by weak comparison; a strong tag matches a stored
// weak one only when the stored body is the decoded content (GitHub sends
// W/"x" on a gzipped 200 and "x" on the 304, and net/http decoded the 200;
// nginx does the same for a body that was stored gzipped, whose strong tag
// names the identity representation, not what we hold). A Last-Modified on
// the 304 must equal the stored one: a rolled-back file is older, not the
// same.
func unconfirmed(stored, notModified http.Header) string {
	if tag := notModified.Get("Etag"); tag != "" {
		st := stored.Get("Etag")
		if !weakMatch(tag, st) {
			return "etag-mismatch"
		}
		if !isWeak(tag) && isWeak(st) && !acceptsCoding(nil, stored) {
			return "coded-etag-mismatch"
		}
	}
	if lm := notModified.Get("Last-Modified"); lm != "" {
		if slm := stored.Get("Last-Modified"); slm != "" && !sameDate(lm, slm) {
			return "last-modified-mismatch"
		}
	}
	return ""
}

func isWeak(tag string) bool {
	return strings.HasPrefix(strings.TrimSpace(tag), "W/")
}

// sameDate compares two HTTP-dates as instants, or as text when either
// does not parse.
func sameDate(a, b string) bool {
	ta, errA := http.ParseTime(a)
	tb, errB := http.ParseTime(b)
	if errA != nil || errB != nil {
		return strings.TrimSpace(a) == strings.TrimSpace(b)
	}
	return ta.Equal(tb)
}

// opaqueTag returns an entity tag without its weakness prefix.
func opaqueTag(tag string) string {
	return strings.TrimPrefix(strings.TrimSpace(tag), "W/")
}

// weakMatch compares two entity tags with the weak comparison of RFC 9110
// §8.8.3.2: the opaque tags are equal, whatever their W/ prefix.
func weakMatch(a, b string) bool {
	a, b = opaqueTag(a), opaqueTag(b)
	return a != "" && a == b
}

// validLastModified returns the response's Last-Modified when it is a valid
// HTTP-date, so that it may be sent back as If-Modified-Since verbatim.
func validLastModified(h http.Header) string {
	lm := h.Get("Last-Modified")
	if lm == "" {
		return ""
	}
	if _, err := http.ParseTime(lm); err != nil {
		return ""
	}
	return lm
}

// conditionalFields are the request fields that make a request conditional
// or partial; a request carrying any of them passes through untouched.
var conditionalFields = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

func hasConditional(h http.Header) bool {
	for _, k := range conditionalFields {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}
