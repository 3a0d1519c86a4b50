package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// sharedTag is the ETag of every entry the suite writes but where it wants
// another: representations sharing a validator are what a header update
// must not confuse.
const sharedTag = `"shared"`

// sample returns an entry whose every field derives from name, so that a
// field taken from another entry shows.
func sample(name string, body []byte) *etagcache.Entry {
	d := sha256.Sum256([]byte(name))
	return &etagcache.Entry{
		Status: http.StatusOK,
		Header: http.Header{
			"Etag":         {sharedTag},
			"Content-Type": {"text/plain; charset=utf-8"},
			"Link":         {"<" + name + "1>; rel=next", "<" + name + "2>; rel=last"},
			"X-Name":       {name},
			"X-Empty":      {""},
		},
		Body:         body,
		VaryNames:    []string{"Accept-Encoding", "X-" + name},
		VaryDigest:   d[:],
		RequestTime:  time.Unix(1700000000, int64(d[0])*1000+7),
		ResponseTime: time.Unix(1700000001, int64(d[1])*1000+9),
	}
}

// updated returns what the transport hands a header update after a 304:
// a copy of e, as Get returned it, with a new header and times.
func updated(e *etagcache.Entry, kv ...string) *etagcache.Entry {
	u := *e
	u.Header = e.Header.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		u.Header.Set(kv[i], kv[i+1])
	}
	u.RequestTime = e.RequestTime.Add(time.Hour)
	u.ResponseTime = e.ResponseTime.Add(time.Hour)
	return &u
}

// snapshot is a deep copy of an entry, to tell later whether it changed.
func snapshot(e *etagcache.Entry) *etagcache.Entry {
	c := *e
	c.Header = e.Header.Clone()
	c.Body = bytes.Clone(e.Body)
	c.VaryNames = slices.Clone(e.VaryNames)
	c.VaryDigest = bytes.Clone(e.VaryDigest)
	return &c
}

// requireSame fails unless got has every field of want. Empty and nil
// slices are the same; times are compared as instants.
func requireSame(t testing.TB, want, got *etagcache.Entry, msgAndArgs ...any) {
	t.Helper()
	require.NotNil(t, got, msgAndArgs...)
	if d := diff(want, got); d != "" {
		require.Fail(t, "entries differ: "+d, msgAndArgs...)
	}
}

// diff describes the first fields in which two entries differ, or "".
func diff(want, got *etagcache.Entry) string {
	var d []string
	if want.Status != got.Status {
		d = append(d, fmt.Sprintf("Status %d, want %d", got.Status, want.Status))
	}
	if !sameHeader(want.Header, got.Header) {
		d = append(d, fmt.Sprintf("Header %v, want %v", got.Header, want.Header))
	}
	if !bytes.Equal(want.Body, got.Body) {
		d = append(d, fmt.Sprintf("Body %d bytes %.40q, want %d bytes %.40q", len(got.Body), got.Body, len(want.Body), want.Body))
	}
	if !slices.Equal(want.VaryNames, got.VaryNames) {
		d = append(d, fmt.Sprintf("VaryNames %q, want %q", got.VaryNames, want.VaryNames))
	}
	if !bytes.Equal(want.VaryDigest, got.VaryDigest) {
		d = append(d, fmt.Sprintf("VaryDigest %x, want %x", got.VaryDigest, want.VaryDigest))
	}
	if !want.RequestTime.Equal(got.RequestTime) || !want.ResponseTime.Equal(got.ResponseTime) {
		d = append(d, fmt.Sprintf("times %v, %v, want %v, %v", got.RequestTime, got.ResponseTime, want.RequestTime, want.ResponseTime))
	}
	return strings.Join(d, "; ")
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range a {
		ws, ok := b[k]
		if !ok || !slices.Equal(vs, ws) {
			return false
		}
	}
	return true
}

// tokenEntry is an entry that proves its own wholeness: its body names the
// key, the variant and a token that its header, Vary digest, times and the
// body's length all derive from. Every entry shares one ETag.
func tokenEntry(key, variant string, tok uint64) *etagcache.Entry {
	ts := strconv.FormatUint(tok, 10)
	body := []byte(key + "|" + variant + "|" + ts + "|")
	body = append(body, bytes.Repeat([]byte{byte('a' + tok%26)}, int(tok%997))...)
	d := sha256.Sum256([]byte(ts))
	t0 := time.Unix(1700000000, int64(tok%1_000_000_000))
	return &etagcache.Entry{
		Status:       http.StatusOK,
		Header:       http.Header{"Etag": {sharedTag}, "X-Token": {ts}},
		Body:         body,
		VaryNames:    []string{"X-Token"},
		VaryDigest:   d[:],
		RequestTime:  t0,
		ResponseTime: t0.Add(time.Second),
	}
}

// checkToken reports how e is not a whole entry of key and variant, or "".
// A header update may have added X-Update and moved both times by the same
// whole number of seconds.
func checkToken(e *etagcache.Entry, key, variant string) string {
	prefix := key + "|" + variant + "|"
	rest, ok := bytes.CutPrefix(e.Body, []byte(prefix))
	if !ok {
		return fmt.Sprintf("body %.60q is not of %q %q", e.Body, key, variant)
	}
	ts, _, ok := bytes.Cut(rest, []byte("|"))
	tok, err := strconv.ParseUint(string(ts), 10, 64)
	if !ok || err != nil {
		return fmt.Sprintf("body %.60q names no token", e.Body)
	}
	want := tokenEntry(key, variant, tok)
	if !bytes.Equal(e.Body, want.Body) {
		return fmt.Sprintf("body of token %d torn: %d bytes, want %d", tok, len(e.Body), len(want.Body))
	}
	h := maps.Clone(e.Header)
	delete(h, "X-Update")
	if !sameHeader(h, want.Header) {
		return fmt.Sprintf("body of token %d under header %v", tok, e.Header)
	}
	if e.Status != want.Status || !slices.Equal(e.VaryNames, want.VaryNames) || !bytes.Equal(e.VaryDigest, want.VaryDigest) {
		return fmt.Sprintf("body of token %d with status %d, Vary %q %x", tok, e.Status, e.VaryNames, e.VaryDigest)
	}
	moved := e.RequestTime.Sub(want.RequestTime)
	if moved%time.Second != 0 || !e.ResponseTime.Equal(want.ResponseTime.Add(moved)) {
		return fmt.Sprintf("body of token %d with times %v, %v", tok, e.RequestTime, e.ResponseTime)
	}
	return ""
}

// assertUnchanged fails if e differs from the snapshot taken of it.
func assertUnchanged(t testing.TB, snap, e *etagcache.Entry, what string) {
	t.Helper()
	if d := diff(snap, e); d != "" {
		assert.Fail(t, what+" was modified: "+d)
	}
}
