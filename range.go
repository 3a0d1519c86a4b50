package etagcache

import (
	"context"
	"errors"
	"io"
	"maps"
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
// answers with a freshness lifetime is kept for later ranges. A kept 206 is
// combined only with the rest of the representation under its strong ETag,
// and answers a request without Range only as the whole (complete). Without
// freshness, Range requests bypass the store, as they always did, except
// under OnlyIfCached, which serves them from a usable stored 200 or 504s.

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
	pe, err := t.storeGet(ctx, l.key, partialVariant(l.part))
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
	a := t.admitPartial(ctx, &l, req, resp, now)
	if !a.store {
		status := "fwd=bypass"
		if a.detail != "" {
			status += "; detail=" + a.detail
		}
		return t.passOn(req, resp, status), nil
	}
	e := &Entry{
		Status:       resp.StatusCode,
		Header:       withoutNoCacheFields(storedHeader(resp.Header)),
		VaryNames:    a.names,
		VaryDigest:   a.digest[:],
		RequestTime:  sent,
		ResponseTime: t.now(),
	}
	t.storeAtEOF(ctx, resp, l.key, a.variant, l.note, e)
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
// the start of the representation (RFC 9111 §3.4). A 206 that holds all of
// it is the complete response: it is stored as a 200 and served, without
// the origin. Otherwise only the rest is asked for (Range: bytes=N-, with
// If-Range when the stored part has a strong ETag), and a 206 for exactly
// the rest, under the same strong ETag, is streamed after the stored part
// as a complete 200, which is stored once read to its end; a 200 is the
// whole representation and is used as any other. ok is false when there is
// nothing to complete, or when the answer is not usable (it answered a
// range the caller never asked for: it has been discarded, and the caller
// fetches in full).
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
	d := decide(rd, pe, t.now(), t.fx.cfg)
	if d.action != actServe {
		return nil, false, nil
	}
	// The complete response goes where stored would put a 200.
	variant := l.part
	if l.primary {
		variant = l.secondary
	}
	if last+1 == total {
		e := &Entry{Status: http.StatusOK, Header: completeHeader(pe.Header, total), Body: pe.Body,
			VaryNames: pe.VaryNames, VaryDigest: pe.VaryDigest, RequestTime: pe.RequestTime, ResponseTime: pe.ResponseTime}
		t.putComplete(ctx, l, variant, e)
		return t.serveStored(req, e, d, ""), true, nil
	}
	if rd.onlyIfCached(t.fx.cfg) {
		return nil, false, nil
	}

	rest := new(http.Request)
	*rest = *req
	rest.Header = req.Header.Clone()
	if rest.Header == nil {
		rest.Header = make(http.Header)
	}
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
	status := "fwd=partial; fwd-status=" + strconv.Itoa(r.StatusCode)
	if t.unaccounted(ctx, rest, r) {
		// Someone's answer, not the partition's: neither stored nor
		// combined. A 200 is what the caller asked for; for anything else
		// the plain fetch notices the credentials too and passes its answer on.
		if r.StatusCode == http.StatusOK {
			return t.passOn(req, r, status+"; detail=credentials-below-cache"), true, nil
		}
		discard(r.Body)
		return nil, false, nil
	}
	switch r.StatusCode {
	case http.StatusOK:
		resp, _, err := t.stored(req, rest, l, r, sent, status, false)
		return resp, true, err
	case http.StatusPartialContent:
	default:
		discard(r.Body) // a 416, say: the answer to a range the caller never asked for
		return nil, false, nil
	}
	want := total - int64(len(pe.Body))
	f, lst, tot, valid := contentRange(r.Header.Get("Content-Range"))
	if !valid || f != last+1 || lst != total-1 || tot != total || etag == "" || isWeak(etag) ||
		r.Header.Get("Etag") != etag || r.Body == nil || r.ContentLength >= 0 && r.ContentLength != want {
		discard(r.Body) // not the rest of the same representation
		return nil, false, nil
	}
	header := completeHeader(mergeHeader(pe.Header, storedHeader(r.Header), 1), total)
	receiptDate(header, r.Header, t.now())
	out := &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         r.Proto,
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Header:        header.Clone(),
		ContentLength: total,
		Request:       req,
		TLS:           r.TLS,
	}
	if sc := r.Header["Set-Cookie"]; len(sc) > 0 {
		out.Header["Set-Cookie"] = sc // for this caller only
	}
	restBody := r.Body
	if _, star := varyNames(r.Header); !star && !t.noStore(r) {
		e := &Entry{Status: http.StatusOK, Header: withoutNoCacheFields(header), VaryNames: pe.VaryNames,
			VaryDigest: pe.VaryDigest, RequestTime: sent, ResponseTime: t.now()}
		// The stored part begins the kept copy, which grows with the bytes
		// of the rest as they arrive, never to the total announced.
		sb := newStoringBody(ctx, r.Body, total, t.maxSize, func(body []byte) {
			e.Body = body
			t.putComplete(ctx, l, variant, e)
		})
		sb.buf = pe.Body[:len(pe.Body):len(pe.Body)] // full: the first byte read copies it
		restBody = sb
		status += "; stored"
	}
	out.Header[HeaderCacheStatus] = []string{cacheStatus(r.Header, status)}
	t.stats.bytesServed.Add(int64(len(pe.Body)))
	out.Body = &completedBody{head: pe.Body, rest: restBody, want: want}
	return out, true, nil
}

// completeHeader makes the header of a stored partial response, or of one
// merged with the rest, that of the complete representation of total bytes.
func completeHeader(partial http.Header, total int64) http.Header {
	h := maps.Clone(partial) // the values are shared and never modified
	delete(h, "Content-Range")
	h["Content-Length"] = []string{strconv.FormatInt(total, 10)}
	return h
}

// putComplete stores the complete response e made for the lookup l.
func (t *Transport) putComplete(ctx context.Context, l lookup, variant string, e *Entry) {
	wrote, err := t.guardedWrite(ctx, l.key, l.note, func() error { return t.store.Put(ctx, l.key, variant, e) })
	if err != nil {
		if ctx.Err() == nil {
			t.storeFailed(ctx, "put", l.key, err)
		}
		return
	}
	if wrote {
		t.stats.stored.Add(1)
	}
}

// errLongerThanAnnounced is what a completed body returns when the origin
// sends more than the rest of the representation.
var errLongerThanAnnounced = errors.New("etagcache: the rest of a partial response is longer than its Content-Range")

// completedBody is the stored part of a representation followed by the
// rest, read from the origin; it fails unless the rest is exactly want
// bytes long, as the Content-Range of both said.
type completedBody struct {
	head      []byte
	rest      io.ReadCloser
	want, got int64
}

func (b *completedBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	n, err := b.rest.Read(p)
	b.got += int64(n)
	switch {
	case b.got > b.want:
		return n - int(min(int64(n), b.got-b.want)), errLongerThanAnnounced
	case err == io.EOF && b.got < b.want:
		return n, io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *completedBody) Close() error { return b.rest.Close() }
