package etagcache

import (
	"net/http"
	"strings"
)

// Result says how a Transport produced a response. Read it with ResultOf.
type Result int

const (
	// ResultNone: the response did not come through an etagcache
	// Transport's store logic (another RoundTripper, or a method such as
	// POST or HEAD that is only passed on).
	ResultNone Result = iota
	// ResultBypass: the request went to the origin without consulting the
	// store (it carried its own preconditions, a body or no-store).
	ResultBypass
	// ResultMiss: the body came from the origin, either because nothing
	// usable was stored or because the stored response had changed.
	ResultMiss
	// ResultRevalidated: the origin answered 304 Not Modified; the body came
	// from the store and the header fields from the origin's 304.
	ResultRevalidated
	// ResultHit: the response was served from the store without contacting
	// the origin.
	ResultHit
)

// String returns the name of r.
func (r Result) String() string {
	switch r {
	case ResultBypass:
		return "bypass"
	case ResultMiss:
		return "miss"
	case ResultRevalidated:
		return "revalidated"
	case ResultHit:
		return "hit"
	}
	return "none"
}

// ResultOf reports how a Transport produced resp, from the member it added
// to the response's Cache-Status field. It returns ResultNone for nil or
// for a response that no etagcache Transport handled.
func ResultOf(resp *http.Response) Result {
	if resp == nil {
		return ResultNone
	}
	vs := resp.Header[HeaderCacheStatus]
	// Ours is the last member: we are the cache closest to the caller.
	// (Read without splitting, so that asking costs no allocation.)
	for i := len(vs) - 1; i >= 0; i-- {
		for rest := vs[i]; ; {
			j := strings.LastIndexByte(rest, ',')
			if r, ok := parseMember(rest[j+1:]); ok {
				return r
			}
			if j < 0 {
				break
			}
			rest = rest[:j]
		}
	}
	return ResultNone
}

func parseMember(m string) (Result, bool) {
	name, params, _ := strings.Cut(m, ";")
	if strings.TrimSpace(name) != cacheName {
		return ResultNone, false
	}
	r := ResultNone
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch {
		case k == "hit":
			return ResultHit, true
		case k == "fwd" && v == "bypass":
			return ResultBypass, true
		case k == "fwd":
			r = ResultMiss
		case k == "fwd-status" && v == "304" && r == ResultMiss:
			r = ResultRevalidated
		}
	}
	return r, true
}

// cacheName identifies this cache in Cache-Status.
const cacheName = "etagcache"

// addCacheStatus appends this cache's member to the Cache-Status list,
// after those of caches closer to the origin (RFC 9211 §2).
func addCacheStatus(h http.Header, params string) {
	h.Set(HeaderCacheStatus, cacheStatus(h, params))
}

// cacheStatus returns the Cache-Status value for h with this cache's member
// appended.
func cacheStatus(h http.Header, params string) string {
	member := cacheStatusMember(params)
	if prev := h[HeaderCacheStatus]; len(prev) > 0 {
		member = strings.Join(prev, ", ") + ", " + member
	}
	return member
}

// cacheStatusMember returns this cache's Cache-Status member, without
// building a string for the common cases.
func cacheStatusMember(params string) string {
	switch params {
	case "fwd=stale; fwd-status=304":
		return "etagcache; fwd=stale; fwd-status=304"
	case "fwd=bypass":
		return "etagcache; fwd=bypass"
	}
	return "etagcache; " + params
}
