package etagcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// cacheKey returns the normalised absolute URL that names a resource in the
// store: scheme and host lower-cased, the scheme's default port dropped, an
// empty path made "/", user information and fragment dropped. It runs on
// every request, so it builds the key with a single allocation.
func cacheKey(u *url.URL) string {
	scheme, host := lowerASCII(u.Scheme), lowerASCII(u.Host)
	switch {
	case scheme == "http" && strings.HasSuffix(host, ":80"):
		host = host[:len(host)-3]
	case scheme == "https" && strings.HasSuffix(host, ":443"):
		host = host[:len(host)-4]
	}
	host = strings.TrimSuffix(host, ":") // an empty port is the default one
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		return scheme + "://" + host + path + "?" + u.RawQuery
	}
	return scheme + "://" + host + path
}

// lowerASCII lower-cases s, without allocating when it already is.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (after the normalisation of cacheKey).
func sameOrigin(a, b *url.URL) bool {
	oa, ob := *a, *b
	oa.Path, oa.RawPath, oa.RawQuery, oa.ForceQuery = "", "", "", false
	ob.Path, ob.RawPath, ob.RawQuery, ob.ForceQuery = "", "", "", false
	return cacheKey(&oa) == cacheKey(&ob)
}

// partition returns the part of a variant name that separates users: empty
// for a request without credentials, otherwise a SHA-256 digest of them.
// Raw credentials never leave this function.
func partition(req *http.Request) string {
	auth := req.Header.Values("Authorization")
	cookie := req.Header.Values("Cookie")
	var user string
	if req.URL.User != nil {
		user = req.URL.User.String()
	}
	if len(auth) == 0 && len(cookie) == 0 && user == "" {
		return ""
	}
	h := sha256.New()
	h.Write([]byte("etagcache credentials v1\x00"))
	for _, v := range auth {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	for _, v := range cookie {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	h.Write([]byte{1})
	h.Write([]byte(user))
	return "u" + hex.EncodeToString(h.Sum(nil)[:16])
}

// varyNames parses the Vary fields of a response into canonical header
// names, without duplicates. star reports a "*" member, which no request
// ever matches.
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h.Values("Vary") {
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				star = true
			default:
				f = http.CanonicalHeaderKey(f)
				if !slices.Contains(names, f) {
					names = append(names, f)
				}
			}
		}
	}
	return names, star
}

// varyDigest hashes the credential partition and the request's values of
// the named fields. Repeated field lines are joined and white space around
// members trimmed, so equivalent requests hash alike (RFC 9111 §4.1); an
// absent field hashes differently from an empty one.
func varyDigest(part string, names []string, req *http.Request) [sha256.Size]byte {
	if part == "" && len(names) == 0 {
		return noVaryDigest // the common case, hashed once
	}
	var scratch [256]byte // enough for most requests, so hashing does not allocate
	b := append(scratch[:0], part...)
	for _, name := range names {
		b = append(b, 0)
		b = append(b, name...)
		vs, ok := req.Header[name]
		if !ok {
			b = append(b, 1)
			continue
		}
		b = append(b, 2)
		for i, v := range vs {
			for j, m := range strings.Split(v, ",") {
				if i+j > 0 {
					b = append(b, ',')
				}
				b = append(b, strings.TrimSpace(m)...)
			}
		}
	}
	return sha256.Sum256(b)
}

var noVaryDigest = sha256.Sum256(nil)

// matches reports whether e is the variant that req selects.
func (e *Entry) matches(part string, req *http.Request) bool {
	d := varyDigest(part, e.VaryNames, req)
	return bytes.Equal(d[:], e.VaryDigest)
}

// derivedVariant names where a variant lives when the partition's primary
// slot holds another one.
func derivedVariant(part string, digest [sha256.Size]byte) string {
	return part + "/" + hex.EncodeToString(digest[:16])
}
