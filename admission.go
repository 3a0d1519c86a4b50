package etagcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/http"
	"slices"
	"time"
)

// Admission is the one decision on what may become of a response the
// origin sent: whether it may be stored, under which variant, and whether
// it may also be handed to another caller (a coalesced follower). Every
// path that stores or shares a response asks here: the miss, the
// revalidation, a POST's answer, range completion and the background
// refresh. The rules, from the request really sent and the response:
//
//   - credentials that the base transport added below the cache, which the
//     partition cannot see: neither stored nor shared;
//   - the caller's no-store (request Cache-Control, or WithoutStore):
//     not stored, not shared;
//   - a response the cache may not reuse (no-store, Vary: *, a status or
//     lack of validator that makes it not worth storing): not stored, not
//     shared — sharing a response is reusing it (RFC 9111 §4);
//   - Set-Cookie: may be stored (without the field), never shared: it is
//     meant for the one request that was sent (RFC 9111 §3.1);
//   - a shared response goes only to followers whose request it fits, as a
//     stored one would be served only to them: their Vary values and an
//     acceptable content coding (RFC 9111 §4.1).
type admission struct {
	store   bool     // the body may be written to the store
	names   []string // the Vary names it is filed under
	digest  [sha256.Size]byte
	variant string // the slot it goes to
	share   bool   // it may be handed to followers that fit
	detail  string // why it is neither stored nor shared, for Cache-Status
	// lazy: names and digest are read from the shared response's header
	// when a follower asks (a revalidation: most have no follower).
	lazy bool
}

// admit decides on resp, the origin's answer to sent, a request made for
// the lookup l.
func (t *Transport) admit(ctx context.Context, l *lookup, sent *http.Request, resp *http.Response) admission {
	if t.unaccounted(ctx, sent, resp) {
		return admission{detail: "credentials-below-cache"}
	}
	if withoutStore(ctx) || hasDirective(l.h, "no-store") {
		return admission{}
	}
	if !t.reusable(resp) {
		return admission{}
	}
	a := admission{share: len(resp.Header["Set-Cookie"]) == 0 && len(resp.Header["Set-Cookie2"]) == 0}
	names, _ := varyNames(resp.Header)
	a.names = t.impliedVary(names, resp.Header, l.h)
	a.digest = varyDigest(l.part, a.names, l.vary)
	a.store = resp.Body != nil && resp.ContentLength <= t.maxSize
	a.variant = l.part
	if l.primary && (l.entry == nil || l.variant != l.part) {
		// The primary slot holds another variant; this one goes beside it,
		// where a lookup with the primary's Vary names will look, whatever
		// Vary this response has.
		a.variant = l.secondary
	}
	return a
}

// admitPartial decides on a 206 answering a plain Range request, kept in
// the partition's slot for partial responses: the same gates as admit, and
// a single range with a lifetime of its own (a 206 is reused only without
// validation, for ranges it holds).
func (t *Transport) admitPartial(ctx context.Context, l *lookup, sent *http.Request, resp *http.Response, now time.Time) admission {
	if resp.StatusCode != http.StatusPartialContent {
		return admission{}
	}
	if t.unaccounted(ctx, sent, resp) {
		return admission{detail: "credentials-below-cache"}
	}
	names, star := varyNames(resp.Header)
	if withoutStore(ctx) || hasDirective(l.h, "no-store") || star || t.noStore(resp) ||
		resp.Body == nil || resp.ContentLength > t.maxSize || !hasLifetime(resp.Header, http.StatusOK, now, t.fx.cfg) {
		return admission{}
	}
	if _, _, _, ok := contentRange(resp.Header.Get("Content-Range")); !ok {
		return admission{}
	}
	a := admission{store: true, names: names, variant: partialVariant(l.part)}
	a.digest = varyDigest(l.part, names, l.vary)
	return a
}

// reusable reports whether a response may answer more than the request
// that was sent: worth storing, not forbidden by no-store, and matching
// some request (no Vary: *). Its size does not count here.
func (t *Transport) reusable(resp *http.Response) bool {
	if !t.worthStoring(resp) || t.noStore(resp) {
		return false
	}
	_, star := varyNames(resp.Header)
	return !star
}

// followers returns the rule that says which followers of a coalesced
// exchange may be handed its answer, resp, received for the leader's
// lookup l under admission a: those that a stored copy would be served to
// (the same partition, which the flight key holds; the same Vary values; a
// content coding they accept). It reads all it needs of resp now: the
// leader's caller owns resp's header once the exchange has returned. An
// answer without Vary or coding fits every follower: nil, no allocation.
func (t *Transport) followers(a admission, l *lookup, resp *http.Response) func(*http.Request) bool {
	if !a.share {
		return shareWithNone
	}
	names, digest := a.names, a.digest
	if a.lazy {
		names, _ = varyNames(resp.Header)
		names = t.impliedVary(names, resp.Header, l.h)
		digest = varyDigest(l.part, names, l.vary)
	}
	if len(names) == 0 && len(resp.Header["Content-Encoding"]) == 0 {
		return nil // it fits every request of the flight, whose key holds the partition
	}
	return t.fits(l.part, names, digest, slices.Clone(resp.Header["Content-Encoding"]))
}

// fits is the rule of followers for an answer filed under names and
// digest in partition part, whose content codings are coding.
func (t *Transport) fits(part string, names []string, digest [sha256.Size]byte, coding []string) func(*http.Request) bool {
	anyCoding := slices.Contains(names, "Accept-Encoding")
	return func(f *http.Request) bool {
		h := canonicalHeader(f.Header)
		fpart, vary := t.partitionFor(f, h)
		if fpart != part {
			return false
		}
		if d := varyDigest(fpart, names, vary); !bytes.Equal(d[:], digest[:]) {
			return false
		}
		return anyCoding || acceptsCodings(h, coding)
	}
}

func shareWithNone(*http.Request) bool { return false }
