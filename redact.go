package etagcache

import "strings"

// redactKey returns a store key (a normalised URL) fit for a log line: the
// query is replaced by "?redacted", since it often carries tokens (API
// keys, signed-URL signatures), and any user information is dropped. The
// scheme, host and path stay, so the line still says which resource failed.
func redactKey(key string) string {
	if i := strings.IndexByte(key, '?'); i >= 0 {
		key = key[:i] + "?redacted"
	}
	// Keys are built without user information; a Host field could still
	// smuggle one in ("user:pass@host").
	if i := strings.Index(key, "://"); i >= 0 {
		rest := key[i+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndexByte(rest[:end], '@'); at >= 0 {
			key = key[:i+3] + rest[at+1:]
		}
	}
	return key
}

// redactErr returns err for a log line: when its text repeats the key whole
// (a store that names what it failed on), a string with the redacted key in
// its place; otherwise err itself, so that handlers keep its type.
func redactErr(err error, key string) any {
	if err == nil || key == "" {
		return err
	}
	msg := err.Error()
	if !strings.Contains(msg, key) {
		return err
	}
	return strings.ReplaceAll(msg, key, redactKey(key))
}
