package etagcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// cacheKey returns the normalised absolute URL that names a resource in the
// store: scheme and host lower-cased, the scheme's default port dropped, an
// empty path made "/", user information and fragment dropped.
func cacheKey(u *url.URL) string {
	return targetKey(u, "")
}

// requestKey returns the key of the request target that is really sent:
// net/http sends req.Host as the Host field when it is set, and URL.Opaque
// as the path when that is set, so both name the resource.
func requestKey(req *http.Request) string {
	return targetKey(req.URL, req.Host)
}

// targetKey builds a key with a single allocation: it runs on every request.
func targetKey(u *url.URL, hostField string) string {
	var buf [256]byte
	return string(appendTargetKey(buf[:0], u, hostField))
}

// appendTargetKey appends the key of u, sent with hostField as Host, to dst.
func appendTargetKey(dst []byte, u *url.URL, hostField string) []byte {
	scheme, host := u.Scheme, u.Host
	if hostField != "" {
		host = hostField
	}
	path := u.EscapedPath()
	if u.Opaque != "" {
		path = u.Opaque
		if rest, ok := strings.CutPrefix(path, "//"); ok {
			// "//authority/path": the request target names its own
			// authority, and the server goes by it, not by Host.
			host, path = rest, ""
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				host, path = rest[:i], rest[i:]
			}
		}
	}
	switch {
	case strings.HasSuffix(host, ":80") && strings.EqualFold(scheme, "http"):
		host = host[:len(host)-3]
	case strings.HasSuffix(host, ":443") && strings.EqualFold(scheme, "https"):
		host = host[:len(host)-4]
	}
	host = strings.TrimSuffix(host, ":") // an empty port is the default one
	if path == "" {
		path = "/"
	}
	n := len(dst)
	dst = append(append(append(dst, scheme...), "://"...), host...)
	lowerInPlace(dst[n:]) // scheme and host are case-insensitive
	dst = append(dst, path...)
	if u.RawQuery != "" || u.ForceQuery {
		dst = append(append(dst, '?'), u.RawQuery...)
	}
	return dst
}

// lowerInPlace lower-cases the ASCII letters of b, eight bytes at a time:
// it runs on every request's key.
func lowerInPlace(b []byte) {
	if len(b) < 8 {
		for i, c := range b {
			if c-'A' < 26 { // one comparison: below 'A' wraps around
				b[i] = c + 'a' - 'A'
			}
		}
		return
	}
	le := binary.LittleEndian
	for i := 0; i+8 <= len(b); i += 8 {
		le.PutUint64(b[i:], lowerWord(le.Uint64(b[i:])))
	}
	// The tail as the last whole word: lower-casing twice changes nothing.
	t := b[len(b)-8:]
	le.PutUint64(t, lowerWord(le.Uint64(t)))
}

// lowerWord lower-cases the ASCII letters among the eight bytes of w. Each
// byte's low seven bits plus a bias set its high bit where the byte is at
// least 'A' (or more than 'Z'); no sum carries into the next byte.
func lowerWord(w uint64) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	low := w &^ high
	atLeastA := low + ones*(0x80-'A')
	pastZ := low + ones*(0x80-'Z'-1)
	upper := atLeastA &^ pastZ &^ w & high // and not a byte of 0x80 or more
	return w | upper>>2                    // 0x80>>2 is the case bit, 0x20
}

// requestURL returns the URL of the request target that is really sent,
// for resolving Location and Content-Location against it.
func requestURL(req *http.Request) *url.URL {
	if u, err := url.Parse(requestKey(req)); err == nil {
		return u
	}
	return req.URL
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (after the normalisation of cacheKey).
func sameOrigin(a, b *url.URL) bool {
	oa, ob := *a, *b
	oa.Path, oa.RawPath, oa.RawQuery, oa.ForceQuery, oa.Opaque = "", "", "", false, ""
	ob.Path, ob.RawPath, ob.RawQuery, ob.ForceQuery, ob.Opaque = "", "", "", false, ""
	return cacheKey(&oa) == cacheKey(&ob)
}

// credentialFields are the request fields that say who is asking.
var credentialFields = [...]string{"Authorization", "Cookie", "Proxy-Authorization"}

// partition returns the part of a variant name that separates users: empty
// for a request without credentials, otherwise a SHA-256 digest of them.
// h is the request's header with canonical keys. Raw credentials never
// leave this function.
func partition(h http.Header, u *url.URL) string {
	if len(h) == 0 && u.User == nil {
		return "" // the commonest request: nothing to hash
	}
	var user string
	if u.User != nil {
		user = u.User.String()
	}
	if !hasCredentials(h) && user == "" {
		return ""
	}
	d := sha256.New()
	d.Write([]byte("etagcache credentials v1\x00"))
	for i, name := range credentialFields {
		if i == 2 && len(h[name]) == 0 {
			// Proxy-Authorization came later: leave the digests of
			// requests without it as they were.
			break
		}
		for _, v := range h[name] {
			d.Write([]byte(v))
			d.Write([]byte{0})
		}
		d.Write([]byte{1})
		if i == 1 {
			d.Write([]byte(user))
		}
	}
	return "u" + hex.EncodeToString(d.Sum(nil)[:16])
}

func hasCredentials(h http.Header) bool {
	for _, name := range credentialFields {
		if len(h[name]) > 0 {
			return true
		}
	}
	return false
}

// hookPartition turns the value of a WithPartition hook into a partition.
// It is hashed like credentials, since users may return one.
func hookPartition(v string) string {
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("etagcache partition v1\x00" + v))
	return "p" + hex.EncodeToString(sum[:16])
}

// varyNames parses the Vary fields of a response into canonical header
// names, without duplicates. star reports a "*" member, which no request
// ever matches.
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
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
// the named fields (h has canonical keys). Repeated field lines are joined
// and white space around members trimmed, so equivalent requests hash alike
// (RFC 9111 §4.1); an absent field hashes differently from an empty one.
func varyDigest(part string, names []string, h http.Header) [sha256.Size]byte {
	if part == "" && len(names) == 0 {
		return noVaryDigest // the common case, hashed once
	}
	var scratch [256]byte // enough for most requests, so hashing does not allocate
	b := append(scratch[:0], part...)
	for _, name := range names {
		b = append(b, 0)
		b = append(b, name...)
		vs, ok := h[name]
		if !ok {
			b = append(b, 1)
			continue
		}
		b = append(b, 2)
		if name == "Accept-Language" || name == "Accept-Encoding" || name == "Accept-Charset" {
			b = appendSetMembers(b, vs)
			continue
		}
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

// appendSetMembers appends the members of a list whose order does not
// matter (each carries its own weight) and whose tokens are case-insensitive,
// lower-cased and sorted: "en, DE" and "de, en" select the same variant
// (RFC 9111 §4.1 allows such normalisation).
func appendSetMembers(b []byte, vs []string) []byte {
	var members []string
	for _, v := range vs {
		for _, m := range strings.Split(v, ",") {
			if m = strings.ToLower(strings.ReplaceAll(strings.TrimSpace(m), " ", "")); m != "" {
				members = append(members, m)
			}
		}
	}
	slices.Sort(members)
	for i, m := range members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	return b
}

var noVaryDigest = sha256.Sum256(nil)

// matches reports whether e is the variant that a request selects: its
// Vary values (in vary, see withoutCredentials) match, and the request's
// header h accepts the content coding of the stored body.
func (e *Entry) matches(part string, vary, h http.Header) bool {
	d := varyDigest(part, e.VaryNames, vary)
	if !bytes.Equal(d[:], e.VaryDigest) {
		return false
	}
	if m := e.memoized(); m != nil && !m.facts.encoded {
		return true // no coding to accept
	}
	// An entry that varies on Accept-Encoding was chosen by the origin for
	// this very Accept-Encoding: whatever its coding, it is this request's.
	return acceptsCoding(h, e.Header) || slices.Contains(e.VaryNames, "Accept-Encoding")
}

// withoutCredentials returns h without the credential fields, for hashing
// Vary values under a WithPartition hook: the hook speaks for the user, so
// an origin's Vary: Authorization or Vary: Cookie must not turn every new
// token or cookie into a variant miss.
func withoutCredentials(h http.Header) http.Header {
	if !hasCredentials(h) {
		return h
	}
	out := h.Clone()
	for _, name := range credentialFields {
		delete(out, name)
	}
	return out
}

// derivedVariant names where a variant lives when the partition's primary
// slot holds another one.
func derivedVariant(part string, digest [sha256.Size]byte) string {
	return part + "/" + hex.EncodeToString(digest[:16])
}
