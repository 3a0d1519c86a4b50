package etagcache_test

// Side by side with github.com/gregjones/httpcache: the same scripted
// scenarios run through both transports, each against its own fresh origin
// with the same handler logic. Every scenario asserts what both get right,
// our behaviour where httpcache is wrong, and httpcache's wrong behaviour too,
// so that the results table stays honest: if httpcache changed, the test
// would say so. Run with -v to print the table as Markdown.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gregjones/httpcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type cmpScenario struct {
	name      string
	rfc       string
	httpcache string
	etagcache string
	handler   cmpHandler
	script    func(t *testing.T, r *cmpRun)
	check     func(t *testing.T, hc, ec *cmpRun)
}

const cmpLastModified = "Tue, 15 Nov 1994 12:45:26 GMT"

var (
	cmpLongBody = strings.Repeat("0123456789abcdef", 64) // 1024 bytes
	cmpTextBody = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 40)
)

// Origins send no freshness information (no max-age, no Expires), so
// httpcache's getFreshness finds every stored response stale and
// revalidates it, as etagcache always does. Only the POST scenario sends
// max-age, because invalidation only matters where a cache serves fresh
// responses without asking.
func cmpScenarios() []cmpScenario {
	return []cmpScenario{
		{
			name:      "1 ETag revalidation",
			rfc:       "RFC 9111 §4.3.1, §4.3.3",
			httpcache: "right: If-None-Match sent, 304s, same bytes; but the whole response is written to the cache again after every 304 (3 writes for 1 miss + 2 revalidations)",
			etagcache: "right: If-None-Match sent, 304s, same bytes; body written once",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				cmpServe(w, r, `"v1"`, cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				for i := 0; i < 3; i++ {
					r.get(t)
				}
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, []string{cmpLongBody, cmpLongBody, cmpLongBody}, r.bodies())
					assert.Equal(t, []int{200, 200, 200}, r.statuses())
					assert.Equal(t, []int{200, 304, 304}, r.origin.statuses())
					assert.Equal(t, []string{"", `"v1"`, `"v1"`}, r.origin.field("If-None-Match"))
				})
				assert.Equal(t, int64(1), ec.bodyWrites())
				assert.Equal(t, int64(3), hc.bodyWrites(), "httpcache no longer re-writes the entry on every 304")
			},
		},
		{
			name:      "2 Last-Modified only",
			rfc:       "RFC 9111 §4.3.1, RFC 9110 §13.1.3",
			httpcache: "right: If-Modified-Since = stored Last-Modified, 304, same bytes",
			etagcache: "right: If-Modified-Since = stored Last-Modified, 304, same bytes",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Last-Modified", cmpLastModified)
				if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil {
					if lm, _ := http.ParseTime(cmpLastModified); !lm.After(ims) {
						w.WriteHeader(http.StatusNotModified)
						return
					}
				}
				_, _ = io.WriteString(w, cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, []string{cmpLongBody, cmpLongBody}, r.bodies())
					assert.Equal(t, []int{200, 304}, r.origin.statuses())
					assert.Equal(t, []string{"", cmpLastModified}, r.origin.field("If-Modified-Since"))
					assert.Equal(t, []string{"", ""}, r.origin.field("If-None-Match"))
				})
			},
		},
		{
			name:      "3 changed resource",
			rfc:       "RFC 9111 §4.3.3",
			httpcache: "right: conditional GET gets the new 200, which replaces the entry; next GET revalidates the new ETag",
			etagcache: "right: same",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				v := o.version.Load()
				cmpServe(w, r, fmt.Sprintf(`"v%d"`, v), fmt.Sprintf("version %d: %s", v, cmpLongBody))
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.origin.version.Add(1)
				r.get(t)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, []string{"version 1: " + cmpLongBody, "version 2: " + cmpLongBody, "version 2: " + cmpLongBody}, r.bodies())
					assert.Equal(t, []int{200, 200, 304}, r.origin.statuses())
					assert.Equal(t, []string{"", `"v1"`, `"v2"`}, r.origin.field("If-None-Match"))
				})
			},
		},
		{
			name:      "4 Vary, two variants alternating",
			rfc:       "RFC 9111 §4.1",
			httpcache: "wrong (wasteful): one variant per URL, each request evicts the other, so a, b, a, b are 4 full 200s and no validator is ever sent; the request value leaks to the caller as X-Varied-Accept",
			etagcache: "right: both variants kept; a, b, a, b = 200, 200, 304, 304; no extra header",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				accept := r.Header.Get("Accept")
				w.Header().Set("Vary", "Accept")
				cmpServe(w, r, `"`+strings.ReplaceAll(accept, "/", "-")+`"`, "as "+accept+": "+cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				for _, a := range []string{"application/json", "text/html", "application/json", "text/html"} {
					r.get(t, "Accept", a)
				}
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					j, h := "as application/json: "+cmpLongBody, "as text/html: "+cmpLongBody
					assert.Equal(t, []string{j, h, j, h}, r.bodies())
				})
				assert.Equal(t, []int{200, 200, 304, 304}, ec.origin.statuses())
				assert.Equal(t, []string{"", "", `"application-json"`, `"text-html"`}, ec.origin.field("If-None-Match"))
				for _, e := range ec.got {
					assert.Empty(t, e.header.Values("X-Varied-Accept"))
				}

				assert.Equal(t, []int{200, 200, 200, 200}, hc.origin.statuses(), "httpcache now keeps several variants")
				assert.Equal(t, []string{"", "", "", ""}, hc.origin.field("If-None-Match"))
				assert.Equal(t, "text/html", hc.got[3].header.Get("X-Varied-Accept"), "httpcache no longer shows X-Varied-Accept")
			},
		},
		{
			name:      "5 POST then GET (max-age=60)",
			rfc:       "RFC 9111 §4.4",
			httpcache: "wrong: the POST deletes key \"POST <url>\", not the GET entry; the next GET is served fresh from the cache without asking: pre-POST body, X-From-Cache: 1, origin never sees it",
			etagcache: "right: a successful POST invalidates the entry; the next GET goes to the origin unconditionally and gets the new body",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					_, _ = io.Copy(io.Discard, r.Body)
					o.version.Add(1)
					w.WriteHeader(http.StatusNoContent)
					return
				}
				v := o.version.Load()
				w.Header().Set("Cache-Control", "max-age=60")
				cmpServe(w, r, fmt.Sprintf(`"v%d"`, v), fmt.Sprintf("version %d", v))
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				resp := r.do(t, http.MethodPost, "/doc", "change")
				require.Equal(t, http.StatusNoContent, resp.status)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, "version 1", r.got[0].body)
				})
				assert.Equal(t, "version 2", ec.got[1].body)
				assert.Equal(t, []string{"GET", "POST", "GET"}, cmpMethods(ec.origin))
				assert.Equal(t, []string{"", "", ""}, ec.origin.field("If-None-Match"))

				assert.Equal(t, "version 1", hc.got[1].body, "httpcache now invalidates the GET entry on POST")
				assert.Equal(t, "1", hc.got[1].header.Get(httpcache.XFromCache))
				assert.Equal(t, []string{"GET", "POST"}, cmpMethods(hc.origin))
			},
		},
		{
			name:      "6 caller's own If-None-Match",
			rfc:       "RFC 9111 §4.3.2, RFC 9110 §15.4.5",
			httpcache: "wrong: the caller's If-None-Match is replaced by the cached ETag (origin sees \"v1\" when the caller sent \"caller\"); a caller holding the current ETag gets a 200 with the full body instead of its 304",
			etagcache: "right: the caller's conditional passes through untouched and the origin's 304 goes back to the caller as is",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				cmpServe(w, r, `"v1"`, cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.get(t, "If-None-Match", `"caller"`)
				r.get(t, "If-None-Match", `"v1"`)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				assert.Equal(t, len(hc.origin.requests()), len(ec.origin.requests()))
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, cmpLongBody, r.got[1].body)
					assert.Equal(t, http.StatusOK, r.got[1].status)
				})
				assert.Equal(t, []string{"", `"caller"`, `"v1"`}, ec.origin.field("If-None-Match"))
				assert.Equal(t, []int{200, 200, 304}, ec.origin.statuses())
				assert.Equal(t, http.StatusNotModified, ec.got[2].status)
				assert.Empty(t, ec.got[2].body)

				assert.Equal(t, []string{"", `"v1"`, `"v1"`}, hc.origin.field("If-None-Match"), "httpcache now keeps the caller's If-None-Match")
				assert.Equal(t, http.StatusOK, hc.got[2].status, "httpcache now returns the caller's 304")
				assert.Equal(t, cmpLongBody, hc.got[2].body)
			},
		},
		{
			name:      "7 304 carrying Content-Length: 0",
			rfc:       "RFC 9111 §3.2",
			httpcache: "wrong: the 304's Content-Length is merged, so the synthetic 200 says Content-Length: 0 while resp.ContentLength and the body are 1024 bytes (a proxy copying headers truncates)",
			etagcache: "right: Content-Length is never taken from a 304; header and resp.ContentLength both say 1024",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("If-None-Match") == `"v1"` {
					// net/http's server drops Content-Length from a 304; some
					// servers and CDNs send it.
					cmpWriteRaw(w, http.StatusNotModified, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				cmpServe(w, r, `"v1"`, cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				n := strconv.Itoa(len(cmpLongBody))
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.Equal(t, []int{200, 304}, r.origin.statuses())
					assert.Equal(t, []string{cmpLongBody, cmpLongBody}, r.bodies())
					assert.Equal(t, int64(len(cmpLongBody)), r.got[1].contentLength)
				})
				assert.Equal(t, n, ec.got[1].header.Get("Content-Length"))
				assert.Equal(t, "0", hc.got[1].header.Get("Content-Length"), "httpcache no longer merges Content-Length from a 304")
			},
		},
		{
			name:      "8 two users, per-user ETags",
			rfc:       "RFC 9111 §3.5, RFC 9110 §11.6.2",
			httpcache: "wrong: one entry per URL for everyone; bob's request carries alice's If-None-Match (and alice's then bob's), every request is a full 200; bodies happen to be right only because the ETags differ per user",
			etagcache: "right: entries partitioned by Authorization; bob's first request is unconditional; alice, bob, alice, bob = 200, 200, 304, 304",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				u := cmpUserOf(r)
				cmpServe(w, r, `"`+u+`-1"`, "private data of "+u)
			},
			script: func(t *testing.T, r *cmpRun) {
				for _, u := range []string{"alice", "bob", "alice", "bob"} {
					r.get(t, "Authorization", "Bearer "+u+"-token")
				}
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					a, b := "private data of alice", "private data of bob"
					assert.Equal(t, []string{a, b, a, b}, r.bodies())
				})
				assert.Equal(t, []string{"", "", `"alice-1"`, `"bob-1"`}, ec.origin.field("If-None-Match"))
				assert.Equal(t, []int{200, 200, 304, 304}, ec.origin.statuses())

				assert.Equal(t, []string{"", `"alice-1"`, `"bob-1"`, `"alice-1"`}, hc.origin.field("If-None-Match"), "httpcache no longer sends one user's validator for another")
				assert.Equal(t, []string{"Bearer bob-token"}, hc.origin.requests()[1].header.Values("Authorization"))
				assert.Equal(t, []int{200, 200, 200, 200}, hc.origin.statuses())
			},
		},
		{
			name:      "8b two users, one weak ETag per revision (per-user bodies)",
			rfc:       "RFC 9111 §3.5, RFC 9110 §11.6.2",
			httpcache: "wrong: bob's request carries alice's W/\"rev-1\", the origin answers 304 and bob is served alice's private body (httpcache documents itself as a single-user cache)",
			etagcache: "right: bob's request is unconditional and he gets his own body",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				cmpServe(w, r, `W/"rev-1"`, "private data of "+cmpUserOf(r))
			},
			script: func(t *testing.T, r *cmpRun) {
				r.get(t, "Authorization", "Bearer alice-token")
				r.get(t, "Authorization", "Bearer bob-token")
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				assert.Equal(t, len(hc.origin.requests()), len(ec.origin.requests()))
				assert.Equal(t, []string{"private data of alice", "private data of bob"}, ec.bodies())
				assert.Equal(t, []string{"", ""}, ec.origin.field("If-None-Match"))

				assert.Equal(t, []string{"private data of alice", "private data of alice"}, hc.bodies(), "httpcache no longer serves alice's body to bob")
				assert.Equal(t, []string{"", `W/"rev-1"`}, hc.origin.field("If-None-Match"))
				assert.Equal(t, []int{200, 304}, hc.origin.statuses())
			},
		},
		{
			name:      "9 truncated body (Content-Length 100, 9 bytes sent)",
			rfc:       "RFC 9111 §3.3",
			httpcache: "right: the caller gets io.ErrUnexpectedEOF, nothing stored, next GET unconditional",
			etagcache: "right: same",
			handler: func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				if o.version.Add(1) == 2 {
					cmpWriteRaw(w, http.StatusOK, "HTTP/1.1 200 OK\r\nETag: \"t\"\r\nContent-Length: 100\r\n\r\nonly part")
					return
				}
				cmpServe(w, r, `"t"`, cmpLongBody)
			},
			script: func(t *testing.T, r *cmpRun) {
				for i := 0; i < 3; i++ {
					r.get(t)
				}
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpSameForCaller(t, hc, ec)
				cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
					assert.ErrorIs(t, r.got[0].readErr, io.ErrUnexpectedEOF)
					assert.Equal(t, "only part", r.got[0].body)
					assert.NoError(t, r.got[1].readErr)
					assert.Equal(t, cmpLongBody, r.got[1].body)
					assert.Equal(t, []string{"", "", `"t"`}, r.origin.field("If-None-Match"), "the truncated body was stored")
					assert.Equal(t, []int{200, 200, 304}, r.origin.statuses())
				})
			},
		},
		{
			name:      "10 gzip from the origin, decoded by net/http",
			rfc:       "RFC 9111 §3.2, RFC 9110 §8.4",
			httpcache: "right: same decoded bytes on the miss and on the revalidation; 2 origin requests, the second a 304",
			etagcache: "right: same",
			handler:   cmpGzipHandler(false),
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) { cmpCheckGzip(t, hc, ec) },
		},
		{
			name:      "10b gzip, and the 304 also carries Content-Encoding: gzip",
			rfc:       "RFC 9111 §3.2",
			httpcache: "wrong: Content-Encoding: gzip from the 304 is merged onto the stored decoded body (bytes right, header says gzip)",
			etagcache: "right: Content-Encoding is never taken from a 304; decoded body, no Content-Encoding",
			handler:   cmpGzipHandler(true),
			script: func(t *testing.T, r *cmpRun) {
				r.get(t)
				r.get(t)
			},
			check: func(t *testing.T, hc, ec *cmpRun) {
				cmpCheckGzip(t, hc, ec)
				assert.Empty(t, ec.got[1].header.Get("Content-Encoding"))
				assert.Equal(t, "gzip", hc.got[1].header.Get("Content-Encoding"), "httpcache no longer merges Content-Encoding from a 304")
			},
		},
	}
}

func cmpMethods(o *cmpOrigin) []string {
	var s []string
	for _, r := range o.requests() {
		s = append(s, r.method)
	}
	return s
}

// gzipHandler honours Accept-Encoding: gzip. With ceOn304 it sets
// Content-Encoding before deciding on a 304, as some servers do.
func cmpGzipHandler(ceOn304 bool) cmpHandler {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = io.WriteString(zw, cmpTextBody)
	_ = zw.Close()
	return func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
		gzipOK := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		w.Header().Set("Vary", "Accept-Encoding")
		w.Header().Set("ETag", `"gz1"`)
		if gzipOK && ceOn304 {
			w.Header().Set("Content-Encoding", "gzip")
		}
		if cmpINMMatches(r.Header.Get("If-None-Match"), `"gz1"`) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if !gzipOK {
			_, _ = io.WriteString(w, cmpTextBody)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(gz.Len()))
		_, _ = w.Write(gz.Bytes())
	}
}

func cmpCheckGzip(t *testing.T, hc, ec *cmpRun) {
	t.Helper()
	cmpSameForCaller(t, hc, ec)
	cmpBothRuns(t, hc, ec, func(t *testing.T, r *cmpRun) {
		assert.Equal(t, []string{cmpTextBody, cmpTextBody}, r.bodies(), "decoded bytes")
		assert.Equal(t, []int{200, 304}, r.origin.statuses())
		assert.Equal(t, []string{"gzip", "gzip"}, r.origin.field("Accept-Encoding"), "net/http asked for gzip")
		assert.Equal(t, []string{"", `"gz1"`}, r.origin.field("If-None-Match"))
		assert.Empty(t, r.got[0].header.Get("Content-Encoding"), "the miss is decoded")
	})
}

// TestCompareWithHTTPCache runs every scenario through both transports and,
// with -v, logs the results table as Markdown.
func TestCompareWithHTTPCache(t *testing.T) {
	var table strings.Builder
	table.WriteString("| Scenario | gregjones/httpcache | etagcache | RFC |\n|---|---|---|---|\n")
	for _, sc := range cmpScenarios() {
		ok := t.Run(sc.name, func(t *testing.T) {
			hc := newCmpRun(t, implHTTPCache, sc.handler)
			sc.script(t, hc)
			ec := newCmpRun(t, implOurs, sc.handler)
			sc.script(t, ec)
			sc.check(t, hc, ec)
		})
		hcOut, ecOut := sc.httpcache, sc.etagcache
		if !ok {
			hcOut, ecOut = "**check failed** ("+hcOut+")", "**check failed** ("+ecOut+")"
		}
		fmt.Fprintf(&table, "| %s | %s | %s | %s |\n", sc.name, hcOut, ecOut, sc.rfc)
	}
	if testing.Verbose() {
		t.Log("\n" + table.String())
	}
}
