package etagcache

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// FuzzRequestKey checks the key and the partition of arbitrary requests:
// they never panic, the Host field and the opaque target always take part
// in the key, and a credential counts whatever the case of its field name
// without ever appearing in the partition.
func FuzzRequestKey(f *testing.F) {
	f.Add("http://Example.com:80/a?b=1", "site-b.example", "", "authorization", "Bearer t0ken-value")
	f.Add("https://10.0.0.1/files/a/secret", "", "/files/b%2Fpublic", "COOKIE", "session=abcdefgh")
	f.Add("http://[::1]:8080/x?", "Other:80", "//auth.example/p", "Proxy-Authorization", "Basic dXNlcjpwdw==")
	f.Fuzz(func(t *testing.T, raw, host, opaque, field, cred string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		u.Opaque = opaque
		req := &http.Request{URL: u, Host: host}
		key := requestKey(req)
		if key != requestKey(req) {
			t.Fatalf("key not deterministic: %q", key)
		}
		if host == "" && opaque == "" && key != cacheKey(u) {
			t.Fatalf("without Host or Opaque the key %q differs from cacheKey %q", key, cacheKey(u))
		}
		if !strings.HasPrefix(opaque, "//") && !strings.ContainsAny(host, "/?#") {
			other := &http.Request{URL: u, Host: host + "x"}
			if requestKey(other) == key {
				t.Fatalf("Host %q and %q share key %q", host, host+"x", key)
			}
		}

		canonical := http.CanonicalHeaderKey(field)
		if !slices.Contains(credentialFields[:], canonical) {
			return
		}
		raw1 := http.Header{field: {cred}}
		p := partition(canonicalHeader(raw1), &url.URL{})
		if want := partition(http.Header{canonical: {cred}}, &url.URL{}); p != want {
			t.Fatalf("%q read as a different partition than %q", field, canonical)
		}
		if p == "" {
			t.Fatalf("a request with %s landed in the anonymous partition", canonical)
		}
		if len(cred) >= 8 && strings.Contains(p, cred) {
			t.Fatalf("credential in clear in partition %q", p)
		}
	})
}

// parseFields reads "Name: value" lines into a header, keys as written.
func parseFields(s string) http.Header {
	h := http.Header{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" {
			continue
		}
		h[k] = append(h[k], strings.TrimSpace(v))
	}
	return h
}

// FuzzMergeHeader checks the 304 merge on arbitrary headers: the stored
// header is never changed, Content-Length and the stored body's coding
// never come from the 304, every other end-to-end field of the 304 wins,
// and no field of an earlier exchange is replayed.
func FuzzMergeHeader(f *testing.F) {
	f.Add("Content-Length: 10\nEtag: W/\"x\"\nAge: 100\nCache-Status: CDN; hit", "Etag: \"x\"\nContent-Length: 0\nX-Ratelimit-Remaining: 58")
	f.Add("Content-Encoding: gzip\nVary: Accept", "Content-Encoding: br\nConnection: X-Hop\nX-Hop: 1\nSet-Cookie: a=b")
	f.Add("etag: \"a\"", "ETAG: \"b\"\nkeep-alive: 5\nTransfer-Encoding: chunked")
	f.Fuzz(func(t *testing.T, storedText, nmText string) {
		stored := canonicalHeader(parseFields(storedText))
		nm := canonicalHeader(parseFields(nmText))
		before := stored.Clone()
		merged := mergeHeader(stored, nm, 3)
		if !equalHeader(before, stored) {
			t.Fatalf("the stored header was changed: %v -> %v", before, stored)
		}
		for _, k := range notFrom304 {
			if !slices.Equal(merged[k], stored[k]) {
				t.Fatalf("%s came from the 304: %v, stored %v", k, merged[k], stored[k])
			}
		}
		for k, vs := range nm {
			if mergeable(nm, k) && !slices.Equal(merged[k], vs) {
				t.Fatalf("the 304's %s was not applied: %v", k, merged[k])
			}
		}
		for _, k := range []string{HeaderCacheStatus, HeaderFromCache, "Set-Cookie"} {
			if _, ok := merged[k]; ok && k != "Set-Cookie" || ok && !slices.Equal(merged[k], stored[k]) {
				t.Fatalf("%s replayed or merged: %v", k, merged[k])
			}
		}
		if _, ok := merged["Age"]; ok && !slices.Equal(merged["Age"], nm["Age"]) {
			t.Fatalf("the stored Age was replayed: %v", merged["Age"])
		}
		// The result shares no value array with the stored header.
		for k, vs := range merged {
			if len(vs) > 0 && len(stored[k]) > 0 && &vs[0] == &stored[k][0] {
				t.Fatalf("%s shares its values with the stored header", k)
			}
		}
	})
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range a {
		if !slices.Equal(vs, b[k]) {
			return false
		}
	}
	return true
}
