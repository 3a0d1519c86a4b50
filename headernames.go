package etagcache

// Header fields that a Transport adds to the responses it hands its caller.
// They describe one exchange and are never stored.
const (
	// HeaderCacheStatus names the Cache-Status field (RFC 9211). The
	// Transport appends its member, named "etagcache", to every response
	// to a GET it handles, after the members of caches nearer the origin.
	// ResultOf reads it; parse it yourself only for the details
	// (fwd-status, detail, stored).
	HeaderCacheStatus = "Cache-Status"
	// HeaderFromCache names the X-From-Cache field, set to "1" only on a
	// response for which the origin was not contacted at all. A response
	// revalidated with a 304 does not carry it (unlike gregjones/httpcache);
	// use ResultOf to tell a revalidation from a miss.
	HeaderFromCache = "X-From-Cache"
)
