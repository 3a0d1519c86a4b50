package etagcache

import (
	"context"
	"fmt"
	"net/url"
)

// Purge removes from the store every entry of the resource at rawURL: all
// its variants, for every user (partition), through Store.Delete, or
// Invalidator.Invalidate when the store has it. The URL
// is normalised as requests are (scheme and host case, default port, user
// information and fragment do not count; the query does), so Purge removes
// exactly what a GET of rawURL would look up. rawURL must be absolute.
// Purging a URL that holds nothing is not an error.
//
// The next GET of the resource is a full fetch. Purge is for a caller that
// knows a stored body is unwanted (a resource deleted upstream, a body that
// must not stay on disk); it is never needed for freshness, since every
// stored body is revalidated before it is served.
//
// A response to a GET of the resource that was requested before Purge, and
// is still arriving, is not stored afterwards by this Transport; nor by any
// Transport sharing the store when the store is an Invalidator (a purged
// body must not come back from a request already in flight).
func (t *Transport) Purge(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("etagcache: purge: %w", err)
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("etagcache: purge: %q is not an absolute URL", redactKey(rawURL))
	}
	key := t.stripIgnored(cacheKey(u)) // the key lookups use, WithIgnoredQueryParams applied
	t.inval.mark(key)
	if _, err := t.storeInvalidate(ctx, key, t.now()); err != nil {
		return fmt.Errorf("etagcache: purge %s: %w", redactKey(key), err)
	}
	return nil
}
