package etagcache

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// maxDelta is what a delta-seconds value larger than any we can represent
// is read as (RFC 9111 §1.2.2: 2^31).
const maxDelta = 1 << 31

// cacheControl is the parsed Cache-Control of a request or a response.
// Durations are in whole seconds; -1 means the directive is absent.
type cacheControl struct {
	maxAge               int64 // -1 absent; 0 also when present but invalid (stale)
	maxStale             int64 // -1 absent; maxDelta for a bare max-stale (any staleness)
	minFresh             int64
	staleWhileRevalidate int64
	staleIfError         int64

	noCache        bool     // unqualified no-cache
	noCacheFields  []string // canonical names from no-cache="a, b"
	noStore        bool
	mustRevalidate bool
	immutable      bool
	onlyIfCached   bool
}

// noDirectives is what a header without Cache-Control says.
func noDirectives() cacheControl {
	return cacheControl{maxAge: -1, maxStale: -1, minFresh: -1, staleWhileRevalidate: -1, staleIfError: -1}
}

// parseCacheControl reads every Cache-Control field line of h (RFC 9111
// §5.2): names are case-insensitive; arguments are tokens or quoted strings
// (a comma inside quotes does not end a directive); unknown directives are
// ignored (§5.2.3). A duplicated duration directive keeps its smallest
// value, the most restrictive reading (§4.2.1); an invalid max-age reads as
// 0, i.e. stale, while other invalid durations are ignored.
func parseCacheControl(h http.Header) cacheControl {
	cc := noDirectives()
	for _, line := range h["Cache-Control"] {
		for line != "" {
			var name, arg string
			var quoted bool
			name, arg, quoted, line = nextDirective(line)
			switch strings.ToLower(name) {
			case "max-age":
				n, ok := deltaSeconds(arg)
				if !ok {
					n = 0 // an unreadable lifetime is no lifetime: stale
				}
				cc.maxAge = minDelta(cc.maxAge, n)
			case "max-stale":
				if arg == "" && !quoted {
					cc.maxStale = maxDelta
				} else if n, ok := deltaSeconds(arg); ok {
					cc.maxStale = minDelta(cc.maxStale, n)
				}
			case "min-fresh":
				if n, ok := deltaSeconds(arg); ok {
					cc.minFresh = max(cc.minFresh, n) // more freshness is more restrictive
				}
			case "stale-while-revalidate":
				if n, ok := deltaSeconds(arg); ok {
					cc.staleWhileRevalidate = minDelta(cc.staleWhileRevalidate, n)
				}
			case "stale-if-error":
				if n, ok := deltaSeconds(arg); ok {
					cc.staleIfError = minDelta(cc.staleIfError, n)
				}
			case "no-cache":
				if arg == "" && !quoted {
					cc.noCache = true
					break
				}
				for _, f := range strings.Split(arg, ",") {
					if f = strings.TrimSpace(f); f != "" {
						cc.noCacheFields = append(cc.noCacheFields, http.CanonicalHeaderKey(f))
					}
				}
			case "no-store":
				cc.noStore = true
			case "must-revalidate":
				cc.mustRevalidate = true
			case "immutable":
				cc.immutable = true
			case "only-if-cached":
				cc.onlyIfCached = true
			}
		}
	}
	return cc
}

// nextDirective splits the first directive off a Cache-Control line. A
// quoted argument is returned unescaped, with quoted set.
func nextDirective(s string) (name, arg string, quoted bool, rest string) {
	s = strings.TrimLeft(s, " \t,")
	i := strings.IndexAny(s, "=,")
	if i < 0 {
		return strings.TrimSpace(s), "", false, ""
	}
	if s[i] == ',' {
		return strings.TrimSpace(s[:i]), "", false, s[i+1:]
	}
	name = s[:i] // "max-age =1" names no directive we know: no space around "="
	s = s[i+1:]
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
			}
			b.WriteByte(s[j])
		}
		s = s[min(j+1, len(s)):]
		if k := strings.IndexByte(s, ','); k >= 0 {
			s = s[k+1:]
		} else {
			s = ""
		}
		return name, b.String(), true, s
	}
	if k := strings.IndexByte(s, ','); k >= 0 {
		return name, strings.TrimRight(s[:k], " \t"), false, s[k+1:]
	}
	return name, strings.TrimRight(s, " \t"), false, ""
}

// deltaSeconds parses a delta-seconds value: one or more digits, nothing
// else (leading zeros allowed; a space, sign, fraction or letter makes it
// invalid). Values past 2^31 read as 2^31 (RFC 9111 §1.2.2).
func deltaSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDelta), true
}

func minDelta(cur, n int64) int64 {
	if cur < 0 {
		return n
	}
	return min(cur, n)
}

// requestDirectives are what a request asks of the cache: its Cache-Control,
// or Pragma: no-cache when it has no Cache-Control (RFC 9111 §5.4), plus the
// overrides set on its context.
type requestDirectives struct {
	cc              cacheControl
	refresh         bool // WithRefresh: fetch anew and replace the entry
	onlyIfCachedCtx bool // OnlyIfCached
}

// onlyIfCached reports whether the request must not reach the origin: its
// context says so (both modes), or its Cache-Control does (freshness mode;
// the default mode passes request directives on untouched, as it did).
func (r *requestDirectives) onlyIfCached(cfg freshConfig) bool {
	return r.onlyIfCachedCtx || (cfg.enabled && r.cc.onlyIfCached)
}

// noCache reports whether the request wants the stored response validated.
func (r *requestDirectives) noCache() bool { return r.cc.noCache }

// parseRequestDirectives reads a request's directives from its header h
// (canonical keys) and its context ctx.
func parseRequestDirectives(ctx context.Context, h http.Header) requestDirectives {
	r := requestDirectives{cc: noDirectives()}
	if len(h) > 0 { // most requests have no fields
		r.cc = parseCacheControl(h)
	}
	if _, ok := h["Cache-Control"]; !ok {
		for _, v := range h["Pragma"] {
			for _, f := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(f), "no-cache") {
					r.cc.noCache = true
				}
			}
		}
	}
	c := controlOf(ctx)
	r.onlyIfCachedCtx = c&ctlOnlyIfCached != 0
	r.refresh = c&ctlRefresh != 0
	return r
}

// hasDirectives reports whether parseRequestDirectives could read anything
// but the defaults from a request: whether it has a Cache-Control or Pragma
// field, or a context with OnlyIfCached or WithRefresh.
func hasDirectives(ctx context.Context, h http.Header) bool {
	if len(h) > 0 {
		if _, ok := h["Cache-Control"]; ok {
			return true
		}
		if _, ok := h["Pragma"]; ok {
			return true
		}
	}
	return controlOf(ctx)&(ctlOnlyIfCached|ctlRefresh) != 0
}

// httpDate parses an HTTP-date in any of the three forms recipients must
// accept (RFC 9110 §5.6.7): IMF-fixdate, RFC 850 and asctime. Names are
// matched case-insensitively (RFC 9111 §4.2), but the shape is strict: one
// space between parts, two-digit fields, a four-digit year (two in RFC 850),
// and GMT as the only zone, so that a malformed Expires reads as invalid
// (and so as already expired) rather than as some guess.
func httpDate(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	var layout string
	switch {
	case shaped(v, "Aaa, dd Aaa dddd dd:dd:dd GMT"):
		if t, ok := imfFixdate(v); ok {
			return t, true
		}
		layout = http.TimeFormat
	case shaped(v, "Aaa Aaa _d dd:dd:dd dddd"):
		layout = time.ANSIC
	default:
		day, rest, ok := strings.Cut(v, ", ")
		if !ok || len(day) < 6 || !shaped(rest, "dd-Aaa-dd dd:dd:dd GMT") {
			return time.Time{}, false
		}
		layout = time.RFC850
	}
	// time.Parse matches day and month names whatever their case, but
	// not the zone: only an unusual "gmt" costs an allocation.
	if layout != time.ANSIC && !strings.HasSuffix(v, "GMT") {
		v = v[:len(v)-3] + "GMT"
	}
	t, err := time.Parse(layout, v)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// imfFixdate reads a date already shaped as IMF-fixdate, without the cost
// of time.Parse (it runs on every fresh hit). The week day is not checked,
// as time.Parse does not check it either.
func imfFixdate(v string) (time.Time, bool) {
	num := func(s string) int {
		n := 0
		for i := 0; i < len(s); i++ {
			n = n*10 + int(s[i]-'0')
		}
		return n
	}
	month := 0
	for i, m := range [...]string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"} {
		if v[8]|0x20 == m[0] && v[9]|0x20 == m[1] && v[10]|0x20 == m[2] {
			month = i + 1
		}
	}
	day, hour, minute, sec := num(v[5:7]), num(v[17:19]), num(v[20:22]), num(v[23:25])
	if month == 0 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	t := time.Date(num(v[12:16]), time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day { // 31 Feb and the like
		return time.Time{}, false
	}
	return t, true
}

// shaped reports whether v matches shape character by character: 'A' or
// 'a' a letter of either case, 'd' a digit, '_' a space or a digit, and
// any other letter of shape itself in either case; the rest matches itself.
func shaped(v, shape string) bool {
	if len(v) != len(shape) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c, want := v[i], shape[i]
		switch want {
		case 'A', 'a':
			if !isLetter(c) {
				return false
			}
		case 'd':
			if c < '0' || c > '9' {
				return false
			}
		case '_':
			if c != ' ' && (c < '0' || c > '9') {
				return false
			}
		default:
			if c != want && !(isLetter(c) && c|0x20 == want|0x20) {
				return false
			}
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// ageValue reads a response's Age field: its first member, when it is a
// valid delta-seconds; otherwise 0 (RFC 9111 §5.1).
func ageValue(h http.Header) int64 {
	vs := h["Age"]
	if len(vs) == 0 {
		return 0
	}
	first, _, _ := strings.Cut(vs[0], ",")
	n, ok := deltaSeconds(strings.TrimSpace(first))
	if !ok {
		return 0
	}
	return n
}
