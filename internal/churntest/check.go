package churntest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The kinds of wrong response; a response may be wrong in several ways.
const (
	kindError          = "error"             // RoundTrip or body read failed
	kindStatus         = "status"            // not 200 (a 304 to a request without a precondition, a 416, ...)
	kindLength         = "length-mismatch"   // Content-Length disagrees with the body
	kindCodingHeader   = "coding-header"     // Content-Encoding disagrees with the bytes
	kindUnaccepted     = "unaccepted-coding" // gzip bytes to a caller that did not ask for gzip
	kindGarbled        = "garbled"           // not any variant's body (torn, truncated, undecodable)
	kindPath           = "wrong-path"
	kindTenant         = "wrong-tenant" // another tenant's body under Vary: X-Tenant
	kindETag           = "etag-mismatch"
	kindNeverServed    = "never-served"             // a body the origin never sent for that variant
	kindOlder          = "older-than-current"       // revalidated resource: older than the version current when the request began
	kindBeyondLifetime = "stale-beyond-lifetime"    // freshness mode: served after max-age + stale-while-revalidate
	kindAfterInvalid   = "stale-after-invalidation" // older than what a POST that had returned through a transport made
	kindCookie         = "foreign-cookie"           // a Set-Cookie the origin sent to another request
	kindPost           = "post-failed"
)

var kindOrder = []string{kindError, kindStatus, kindLength, kindCodingHeader, kindUnaccepted, kindGarbled, kindPath,
	kindTenant, kindETag, kindNeverServed, kindOlder, kindBeyondLifetime, kindAfterInvalid, kindCookie, kindPost}

// request is one GET as the worker made it.
type request struct {
	id     string
	worker int
	res    int
	tenant string // "" for none
	accept string // Accept-Encoding the caller set, "" for none (net/http then asks for gzip and decodes)
	header http.Header
	snap   snapshot
}

// outcome is what the checker made of one response.
type outcome struct {
	kinds []string
	notes []string
	// Facts for the tally.
	hit, collapsed, window, staleOK bool
	gzipped                         bool
}

func (oc *outcome) wrong(kind, format string, args ...any) {
	oc.kinds = append(oc.kinds, kind)
	oc.notes = append(oc.notes, kind+": "+fmt.Sprintf(format, args...))
}

// check compares one response with the origin's truth.
func (o *Origin) check(fresh bool, rq *request, resp *http.Response, raw []byte, err error) outcome {
	var oc outcome
	if err != nil {
		oc.wrong(kindError, "%v", err)
		return oc
	}
	res := &resources[rq.res]
	cs := resp.Header.Get("Cache-Status")
	oc.hit = strings.Contains(cs, "; hit")
	oc.collapsed = strings.Contains(cs, "collapsed")
	if resp.StatusCode != http.StatusOK {
		oc.wrong(kindStatus, "status %d", resp.StatusCode)
		return oc
	}
	if resp.ContentLength >= 0 && resp.ContentLength != int64(len(raw)) {
		oc.wrong(kindLength, "ContentLength %d, body %d bytes", resp.ContentLength, len(raw))
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(raw)) {
		oc.wrong(kindLength, "Content-Length: %s, body %d bytes", cl, len(raw))
	}
	oc.gzipped = len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b
	ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	if (ce == "gzip") != oc.gzipped || (ce != "" && ce != "gzip" && ce != "identity") {
		oc.wrong(kindCodingHeader, "Content-Encoding %q on %s bytes", ce, codingName(oc.gzipped))
	}
	if oc.gzipped && rq.accept != "gzip" {
		oc.wrong(kindUnaccepted, "gzip bytes, Accept-Encoding set by the caller: %q", rq.accept)
	}
	text := raw
	if oc.gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			text, err = io.ReadAll(zr)
		}
		if err != nil {
			oc.wrong(kindGarbled, "gzip: %v", err)
			return oc
		}
	}
	var path, tenant, cod string
	var v int
	head, _, _ := bytes.Cut(text, []byte("\n"))
	if _, err := fmt.Sscanf(string(head), "path=%s v=%d tenant=%s coding=%s", &path, &v, &tenant, &cod); err != nil ||
		!bytes.Equal(text, bodyText(path, v, tenant, cod)) {
		oc.wrong(kindGarbled, "%d bytes that are no variant's body", len(text))
		return oc
	}
	if oc.gzipped && cod != "gzip" {
		// The origin gzips only its gzip variant. (Plain bytes of the gzip
		// variant are fine: net/http decoded them for a caller that set no
		// Accept-Encoding, and the cache kept them so.)
		oc.wrong(kindGarbled, "gzip bytes of the %s variant", cod)
	}
	if path != res.path {
		oc.wrong(kindPath, "body of %s", path)
	}
	wantTenant := "-"
	if res.tenantVary {
		wantTenant = rq.tenant
		if wantTenant == "" {
			wantTenant = "none"
		}
	}
	if tenant != wantTenant {
		oc.wrong(kindTenant, "body of tenant %s, asked for %s", tenant, wantTenant)
	}
	if tag := strings.TrimPrefix(resp.Header.Get("Etag"), "W/"); tag != `"v`+strconv.Itoa(v)+`"` {
		oc.wrong(kindETag, "ETag %s on the body of v=%d", resp.Header.Get("Etag"), v)
	}
	if ri := resourceIndex(path); ri >= 0 && !o.wasServed(variant{ri, v, tenant, cod}) {
		oc.wrong(kindNeverServed, "%s v=%d tenant=%s coding=%s", path, v, tenant, cod)
	}
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if kv, _, _ := strings.Cut(sc, ";"); kv != "session="+rq.id {
			oc.wrong(kindCookie, "Set-Cookie %q on the response to %s", sc, rq.id)
		}
	}
	if path == res.path {
		o.checkVersion(fresh, rq, resp, v, &oc)
	}
	return oc
}

// checkVersion checks that v is recent enough. A response is never older
// than the version current when its request began, except that
//   - a caller collapsed onto another's exchange may get what the origin
//     answered that exchange, if it answered before this caller began
//     (coalescing joins exchanges whose header is still awaited);
//   - in freshness mode, a resource with a lifetime may be served until its
//     max-age plus stale-while-revalidate after it was superseded, but not
//     older than what a POST made once that POST had returned through a
//     transport (which then invalidated the resource).
func (o *Origin) checkVersion(fresh bool, rq *request, resp *http.Response, v int, oc *outcome) {
	res := &resources[rq.res]
	floor, postFloor := rq.snap.version, rq.snap.postFloor
	if oc.collapsed {
		if t, err := strconv.ParseUint(resp.Header.Get(headerTick), 10, 64); err == nil && t < rq.snap.tick {
			at := o.versionAt(rq.res, t)
			if at < floor {
				oc.window = v < floor
				floor, postFloor = at, min(postFloor, at)
			}
		}
	}
	if v >= floor {
		return
	}
	if !fresh || res.lifetime == 0 {
		oc.wrong(kindOlder, "v=%d, v=%d was current when the request began", v, floor)
		return
	}
	if v < postFloor {
		oc.wrong(kindAfterInvalid, "v=%d, a POST through a transport had made v=%d before the request began", v, postFloor)
	}
	if at, ok := o.supersededAt(rq.res, v); ok && at.Add(res.lifetime).Before(rq.snap.at) {
		oc.wrong(kindBeyondLifetime, "v=%d, superseded %v before the request began (lifetime %v)",
			v, rq.snap.at.Sub(at).Round(1e6), res.lifetime)
		return
	}
	oc.staleOK = true
}

func codingName(gz bool) string {
	if gz {
		return "gzip"
	}
	return "identity"
}

// tally counts the outcomes of a run and keeps the first wrong response of
// each kind in full.
type tally struct {
	mu                                            sync.Mutex
	gets, wrong, hits, collapsed, window, staleOK int
	gzipped, posts                                int
	kinds                                         map[string]int
	byPath                                        map[string]map[string]int // kind → path → count
	collapsedOf                                   map[string]int            // kind → how many were collapsed
	first                                         string
	firstOf                                       map[string]string
}

func (t *tally) add(rq *request, resp *http.Response, raw []byte, oc outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gets++
	t.count(oc)
	for _, k := range dedup(oc.kinds) {
		if t.byPath[k] == nil {
			t.byPath[k] = map[string]int{}
		}
		t.byPath[k][resources[rq.res].path]++
		if oc.collapsed {
			t.collapsedOf[k]++
		}
	}
	if len(oc.kinds) == 0 {
		return
	}
	t.wrong++
	full := describe(rq, resp, raw, oc)
	if t.first == "" {
		t.first = full
	}
	for _, k := range oc.kinds {
		if t.firstOf[k] == "" {
			t.firstOf[k] = full
		}
	}
}

func (t *tally) count(oc outcome) {
	for _, b := range []struct {
		on bool
		n  *int
	}{{oc.hit, &t.hits}, {oc.collapsed, &t.collapsed}, {oc.window, &t.window}, {oc.staleOK, &t.staleOK}, {oc.gzipped, &t.gzipped}} {
		if b.on {
			*b.n++
		}
	}
	for _, k := range dedup(oc.kinds) {
		t.kinds[k]++
	}
}

func dedup(kinds []string) []string {
	var out []string
	for _, k := range kinds {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// breakdown says, per kind, on which resources and how many collapsed.
func (t *tally) breakdown() []string {
	var lines []string
	for _, k := range kindOrder {
		if t.kinds[k] == 0 || k == kindPost {
			continue
		}
		var parts []string
		for _, r := range resources {
			if n := t.byPath[k][r.path]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", r.path, n))
			}
		}
		lines = append(lines, fmt.Sprintf("%s %d: %s; %d collapsed", k, t.kinds[k], strings.Join(parts, ", "), t.collapsedOf[k]))
	}
	return lines
}

func (t *tally) postFailed(what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kinds[kindPost]++
	if t.first == "" {
		t.first = what
	}
	if t.firstOf[kindPost] == "" {
		t.firstOf[kindPost] = what
	}
}

// summary is the counts by kind, in a fixed order.
func (t *tally) summary() string {
	var parts []string
	for _, k := range kindOrder {
		if n := t.kinds[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// describe is a wrong response in full: request, what the origin was when
// it began, response header and the start of the body.
func describe(rq *request, resp *http.Response, raw []byte, oc outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", strings.Join(oc.notes, "\n"))
	fmt.Fprintf(&b, "GET %s (id %s, worker %d; origin at v=%d, tick %d, POST floor v=%d when it began)\n",
		resources[rq.res].path, rq.id, rq.worker, rq.snap.version, rq.snap.tick, rq.snap.postFloor)
	if len(rq.header) == 0 {
		b.WriteString("  > (no header fields: net/http asks for gzip and decodes)\n")
	}
	writeHeader(&b, "  > ", rq.header)
	if resp == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "  < %s\n", resp.Status)
	writeHeader(&b, "  < ", resp.Header)
	prefix := raw
	if len(prefix) > 120 {
		prefix = prefix[:120]
	}
	fmt.Fprintf(&b, "  body (%d bytes): %q", len(raw), prefix)
	return b.String()
}

func writeHeader(b *strings.Builder, indent string, h http.Header) {
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range h[k] {
			fmt.Fprintf(b, "%s%s: %s\n", indent, k, v)
		}
	}
}
