package etagcache

import (
	"net/http"
	"slices"
	"strings"
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

// Our own markers are added to what the caller sees, never stored.
const (
	headerCacheStatus = "Cache-Status"
	headerFromCache   = "X-From-Cache"
)

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

// storedHeader returns the part of a response header that may be stored:
// everything except hop-by-hop fields and Set-Cookie.
func storedHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		if connectionNamed(h, k) || k == "Set-Cookie" || k == "Set-Cookie2" {
			continue
		}
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// mergeHeader applies a 304's header to a stored one (RFC 9111 §3.2): every
// field of the 304 replaces or adds, except hop-by-hop fields, Set-Cookie and
// the fields in notFrom304. The result shares nothing with stored; it does
// share value slices with notModified, which belongs to a 304 that is
// discarded. Room is made for extra more fields.
func mergeHeader(stored, notModified http.Header, extra int) http.Header {
	n := 0
	for _, vs := range stored {
		n += len(vs)
	}
	values := make([]string, n)                 // one array behind all the stored values
	out := make(http.Header, len(stored)+extra) // a 304 mostly replaces fields
	for k, vs := range stored {
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

func mergeable(notModified http.Header, k string) bool {
	return !connectionNamed(notModified, k) && !slices.Contains(notFrom304, k) && k != "Set-Cookie" && k != "Set-Cookie2"
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
