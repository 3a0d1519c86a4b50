package etagcache

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Range requests in freshness mode (RFC 9110 §14, RFC 9111 §3.3-3.4). A
// request for one byte range is answered from the store, without the
// origin, when a stored response usable without validation holds the whole
// range: the complete 200 of the resource, or the one 206 kept for it. Any
// other Range request goes to the origin as it was made (with If-Range,
// several ranges, or nothing usable stored), and a single-range 206 it
// answers with a freshness lifetime is kept for later ranges. Partial
// responses are never combined, and never served to requests without Range.
// Without freshness, Range requests bypass the store, as they always did.

// partialVariant names the slot of a partition's stored 206.
func partialVariant(part string) string { return part + "#partial" }

// plainRange reports whether h asks for a range and carries no other
// precondition.
func plainRange(h http.Header) bool {
	if _, ok := h["Range"]; !ok || len(h["Range"]) != 1 {
		return false
	}
	for _, k := range conditionalFields {
		if _, ok := h[k]; ok && k != "Range" {
			return false
		}
	}
	return true
}

// getRange serves a plain Range request in freshness mode.
func (t *Transport) getRange(req *http.Request, h http.Header) (*http.Response, error) {
	ctx := req.Context()
	l, err := t.find(ctx, req, h)
	if err != nil {
		return nil, err
	}
	rd := parseRequestDirectives(ctx, h)
	now := t.now()
	spec := h.Get("Range")
	if l.entry != nil && l.entry.Status == http.StatusOK {
		if d := decide(rd, l.entry, now, t.fx.cfg); d.action == actServe {
			if resp := t.serveRange(req, l.entry, d, spec); resp != nil {
				return resp, nil
			}
		}
	}
	variant := partialVariant(l.part)
	pe, err := t.storeGet(ctx, l.key, variant)
	if err != nil {
		return nil, err
	}
	if pe != nil && pe.Status == http.StatusPartialContent && t.entryMatches(pe, l) {
		if d := decide(rd, pe, now, t.fx.cfg); d.action == actServe {
			if resp := t.serveRange(req, pe, d, spec); resp != nil {
				return resp, nil
			}
		}
	}
	if rd.onlyIfCached(t.fx.cfg) {
		return gatewayTimeout(req), nil
	}

	sent := now
	resp, err := t.send(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPartialContent || t.unaccounted(ctx, req, resp) ||
		resp.Body == nil || resp.ContentLength > t.maxSize || t.noStore(resp) ||
		!hasLifetime(resp.Header, http.StatusOK, now, t.fx.cfg) {
		return t.passOn(req, resp, "fwd=bypass"), nil
	}
	if _, _, _, ok := contentRange(resp.Header.Get("Content-Range")); !ok {
		return t.passOn(req, resp, "fwd=bypass"), nil
	}
	names, star := varyNames(resp.Header)
	if star {
		return t.passOn(req, resp, "fwd=bypass"), nil
	}
	digest := varyDigest(l.part, names, h)
	e := &Entry{
		Status:       resp.StatusCode,
		Header:       withoutNoCacheFields(storedHeader(resp.Header)),
		VaryNames:    names,
		VaryDigest:   digest[:],
		RequestTime:  sent,
		ResponseTime: t.now(),
	}
	t.storeAtEOF(ctx, resp, l.key, variant, l.note, e)
	return t.passOn(req, resp, "fwd=partial; stored"), nil
}

// serveRange answers a single-range request from e (a complete 200, or a
// 206 whose Content-Range holds the range), or returns nil when it cannot.
func (t *Transport) serveRange(req *http.Request, e *Entry, d decision, spec string) *http.Response {
	start, total := int64(0), int64(len(e.Body))
	if e.Status == http.StatusPartialContent {
		var end int64
		var ok bool
		start, end, total, ok = contentRange(e.Header.Get("Content-Range"))
		if !ok || end-start+1 != int64(len(e.Body)) {
			return nil
		}
	}
	first, last, ok := byteRange(spec, total)
	if !ok || first < start || last >= start+int64(len(e.Body)) {
		return nil
	}
	part := &Entry{Status: http.StatusPartialContent, Header: e.Header, Body: e.Body[first-start : last-start+1]}
	resp := t.serveStored(req, part, d, "")
	resp.Header = resp.Header.Clone() // its values are shared with the entry; we change some
	resp.Header.Set("Content-Range", "bytes "+strconv.FormatInt(first, 10)+"-"+strconv.FormatInt(last, 10)+"/"+strconv.FormatInt(total, 10))
	return resp
}

// byteRange resolves a Range field of one byte range against a
// representation of total bytes (RFC 9110 §14.1.2): "a-b", "a-" or "-n".
func byteRange(spec string, total int64) (first, last int64, ok bool) {
	unit, set, found := strings.Cut(strings.TrimSpace(spec), "=")
	if !found || !strings.EqualFold(strings.TrimSpace(unit), "bytes") || strings.Contains(set, ",") || total <= 0 {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(set), "-")
	if !found {
		return 0, 0, false
	}
	if a == "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		return max(0, total-n), total - 1, true
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 || first >= total {
		return 0, 0, false
	}
	last = total - 1
	if b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < first {
			return 0, 0, false
		}
		last = min(n, total-1)
	}
	return first, last, true
}

// contentRange parses "bytes first-last/total" with a known total.
func contentRange(v string) (first, last, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	a, b, found2 := strings.Cut(span, "-")
	if !found || !found2 {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	first, err1 = strconv.ParseInt(a, 10, 64)
	last, err2 = strconv.ParseInt(b, 10, 64)
	total, err3 = strconv.ParseInt(size, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || last >= total {
		return 0, 0, 0, false
	}
	return first, last, total, true
}

// complete answers a GET without Range from a fresh stored 206 that holds
// the start of the representation, asking the origin only for the rest
// (RFC 9111 §3.4): Range: bytes=N-, with If-Range when the stored part has
// a strong ETag. A 206 for exactly the rest, under the same strong ETag,
// is combined with the stored part into a complete 200, which is stored and
// served; a 200 is the whole representation and is used as any other. ok
// is false when there is nothing to complete, or when the answer cannot be
// combined (it has then been discarded, and the caller fetches in full).
func (t *Transport) complete(req *http.Request, l lookup, rd requestDirectives) (resp *http.Response, ok bool, err error) {
	ctx := req.Context()
	pe, err := t.storeGet(ctx, l.key, partialVariant(l.part))
	if pe == nil || err != nil || pe.Status != http.StatusPartialContent || !t.entryMatches(pe, l) {
		return nil, false, err
	}
	first, last, total, valid := contentRange(pe.Header.Get("Content-Range"))
	if !valid || first != 0 || last+1 != int64(len(pe.Body)) || total > t.maxSize {
		return nil, false, nil
	}
	if d := decide(rd, pe, t.now(), t.fx.cfg); d.action != actServe {
		return nil, false, nil
	}
	rest := new(http.Request)
	*rest = *req
	rest.Header = req.Header.Clone()
	rest.Header.Set("Range", "bytes="+strconv.FormatInt(last+1, 10)+"-")
	etag := pe.Header.Get("Etag")
	if etag != "" && !isWeak(etag) {
		rest.Header.Set("If-Range", etag)
	}
	sent := t.now()
	r, err := t.send(rest)
	if err != nil {
		return nil, true, err
	}
	switch {
	case r.StatusCode == http.StatusOK:
		resp, _, err := t.stored(req, rest, l, r, sent, "fwd=partial; fwd-status=200", false)
		return resp, true, err
	case r.StatusCode != http.StatusPartialContent:
		return t.passOn(req, r, "fwd=partial; fwd-status="+strconv.Itoa(r.StatusCode)), true, nil
	}
	f, lst, tot, valid := contentRange(r.Header.Get("Content-Range"))
	if !valid || f != last+1 || lst != total-1 || tot != total || etag == "" || isWeak(etag) || r.Header.Get("Etag") != etag {
		discard(r.Body) // not the rest of the same representation
		return nil, false, nil
	}
	body := make([]byte, len(pe.Body), total)
	copy(body, pe.Body)
	n, err := io.ReadFull(r.Body, body[len(body):total])
	_ = r.Body.Close()
	if err != nil || int64(len(pe.Body)+n) != total {
		return nil, true, fmt.Errorf("etagcache: completing a partial response: %w", err)
	}
	body = body[:total]
	header := mergeHeader(pe.Header, storedHeader(r.Header), 1)
	delete(header, "Content-Range")
	header["Content-Length"] = []string{strconv.FormatInt(total, 10)}
	e := &Entry{Status: http.StatusOK, Header: header, Body: body, VaryNames: pe.VaryNames, VaryDigest: pe.VaryDigest,
		RequestTime: sent, ResponseTime: t.now()}
	if _, err := t.guardedWrite(ctx, l.key, l.note, func() error { return t.store.Put(ctx, l.key, l.part, e) }); err != nil && ctx.Err() == nil {
		t.storeFailed(ctx, "put", l.key, err)
	}
	d := decide(rd, e, t.now(), t.fx.cfg)
	out := t.serveStored(req, e, d, "")
	t.stats.hits.Add(-1) // the origin was asked: not a hit
	out.Header.Del(HeaderFromCache)
	out.Header[HeaderCacheStatus] = []string{cacheStatus(r.Header, "fwd=partial; fwd-status=206; stored")}
	return out, true, nil
}
