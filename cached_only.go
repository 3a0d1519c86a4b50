package etagcache

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// onlyIfCached reports whether a request must not reach the origin: its
// context says so (OnlyIfCached), or, in freshness mode, its Cache-Control
// (h, canonical keys) does, as requestDirectives.onlyIfCached reads them.
func (t *Transport) onlyIfCached(ctx context.Context, h http.Header) bool {
	return controlOf(ctx)&ctlOnlyIfCached != 0 || t.fx.cfg.enabled && hasDirective(h, "only-if-cached")
}

// cachedOnly answers, without the origin, a request that may not reach it
// and that get does not take: a HEAD, from a stored GET response without
// its body (RFC 9110 §9.3.2); a GET with preconditions of its own,
// evaluated against the stored response (preconditionAnswer), or with a
// Range (getRange); or a GET with no-store. Anything else, and anything
// decide does not allow the stored response to answer, gets the cache's 504.
func (t *Transport) cachedOnly(req *http.Request, h http.Header) (*http.Response, error) {
	ctx := req.Context()
	get := req.Method == http.MethodGet || req.Method == ""
	if !get && req.Method != http.MethodHead || req.Body != nil && req.Body != http.NoBody || withoutStore(ctx) {
		return gatewayTimeout(req), nil
	}
	if get && plainRange(h) {
		return t.getRange(req, h)
	}
	l, err := t.find(ctx, req, h)
	if err != nil {
		return nil, err
	}
	d := decide(parseRequestDirectives(ctx, h), l.entry, t.now(), t.fx.cfg)
	if d.action != actServe {
		return gatewayTimeout(req), nil
	}
	e := l.entry
	switch preconditionAnswer(h, e.Status, factsOf(e), get) {
	case http.StatusNotModified:
		hh := hitHeader(e, d.age, d.ttl, "", nil)
		for k := range hh {
			if k != "Content-Location" && strings.HasPrefix(k, "Content-") {
				delete(hh, k) // a 304 describes no content (RFC 9110 §15.4.5)
			}
		}
		return t.headerOnly(req, http.StatusNotModified, hh, 0), nil
	case http.StatusGatewayTimeout:
		return gatewayTimeout(req), nil
	}
	if !get {
		return t.headerOnly(req, e.Status, hitHeader(e, d.age, d.ttl, "", nil), int64(len(e.Body))), nil
	}
	return t.serveStored(req, e, d, ""), nil
}

// headerOnly makes a response from the store that has no body: a 304, or
// the answer to a HEAD, whose Content-Length is that of the GET's body.
func (t *Transport) headerOnly(req *http.Request, status int, h http.Header, contentLength int64) *http.Response {
	t.stats.hits.Add(1)
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: contentLength,
		Request:       req,
	}
}
