// Package redisstore is an etagcache.Store kept in Redis, so that a fleet of
// workers polling the same resources shares their validators and bodies:
// one worker downloads a body, every other worker's first request for it is
// already conditional, and a 304 costs a few hundred bytes.
//
// New takes any redis.UniversalClient: a single node (*redis.Client), a
// Sentinel-managed primary (redis.NewFailoverClient) or a Cluster
// (*redis.ClusterClient).
//
// # Records
//
// With the default prefix "etagcache:", a resource (the transport's key, a
// normalised URL) lives in one Redis hash
//
//	etagcache:{<digest of the key>}:h
//
// whose fields are the resource's variants (names the transport already
// derives from digests) and whose values are header records: a version
// byte, the SHA-256 and length of the body, the entry's metadata
// (etagcache.EncodeEntryMeta) and a CRC-32C of all of it. The URL itself is
// never written: query strings often carry API keys. The hash tag {…} keeps
// every record of a resource on one Cluster slot, so deleting a resource is
// one script, and the check-and-set of a header update is one Lua script.
// After an invalidation the hash also holds the field "~inv", the
// resource's tombstone (below); no variant starts with "~".
//
// Bodies are content-addressed: a body is stored once per SHA-256 under
//
//	etagcache:b:<hex SHA-256>
//
// on whatever slot that key hashes to. Put writes the body first and the
// header record second, so a header record never names a body that was not
// written. Get verifies the body against the digest its header record names
// (the empty body too: a record of length 0 must name its digest); a body
// that is missing or does not match, and a header record that fails its
// checksum or does not decode, are a miss, and the header record is removed
// (only if it is still the one read).
//
// # Header updates
//
// UpdateHeader rewrites the header record alone, with a Lua script that
// replaces it only if it is still, byte for byte, the one read; that record
// names the body by its digest, so the update lands only on the body it
// confirms. A worker that stores another representation in the slot
// meanwhile (sharing the ETag: another tenant under Vary, another coding)
// makes the update a no-op reported as etagcache.ErrNotFound. The body Get
// took from the local layer is recognised there at no cost; a body from
// anywhere else is hashed once to be compared.
//
// # Invalidation
//
// The transport invalidates a resource after a successful POST, PUT,
// DELETE... through it, and on Purge (etagcache.Invalidator). Through
// Redis, every worker must then stop storing what it asked for before: a
// GET still streaming its body, a background refresh. Invalidate is one
// script on the resource's hash: it removes every header record and leaves
// the tombstone field "~inv", the time of the invalidation in Unix
// milliseconds (a later one already there stays). Put's script, the one
// that writes the header record, refuses while the tombstone is at or after
// the entry's RequestTime less a margin for clock skew (WithClockSkew,
// DefaultClockSkew of 100 ms): the check costs no round trip, and Put
// returns nil, as for any entry it stores. The margin is the trade for
// workers on different machines: their clocks (the invalidating worker's,
// and the writer's, which dated its request) must agree within it, and a
// response requested within it after an invalidation is not stored either,
// which costs a miss; a resource invalidated more often than the margin is
// not stored at all, and neither is the answer to a POST that the
// transport stores under its own URI in freshness mode (it comes within
// the margin of the POST's own invalidation). Workers on one machine can
// do without it: WithClockSkew(-1).
//
// A hash holding a tombstone alone expires an hour after the invalidation
// (or after the TTL, if longer). Once an entry is stored beside it, the
// tombstone lives as long as the hash: Puts, header updates and Delete keep
// it, and none of them makes the hash expire sooner than the tombstone
// would. A request in flight for longer than that hour when its resource
// was invalidated may store its older answer. Get, UpdateHeader and the
// records' format ignore the field: a hash holding only a tombstone is a
// miss, and workers running an older redisstore read and write such
// hashes as before (but neither honour nor keep the tombstone).
//
// # Local layer
//
// Each Store keeps recently used bodies in memory, keyed by digest
// (WithLocalCache, 64 MiB by default). A body is immutable under its digest,
// so the layer never needs invalidating: a warm worker's revalidation reads
// only the header record from Redis (a few hundred bytes, whatever the body
// size) and serves the body it already holds.
//
// # Size and expiry
//
// Without WithTTL nothing expires: the bound is Redis' own maxmemory, which
// should then be set with an allkeys-* eviction policy (allkeys-lru or
// allkeys-lfu). Bodies no longer named by any header record (the old
// versions of changed resources) are only reclaimed that way, or by the TTL.
// With WithTTL, a resource's header records expire that long after their
// last Put or header update, or after the last Get that found less than half
// of it left (so an entry that is polled stays); bodies live a minute longer
// (so a body outlives every header record naming it). An evicted body makes its header records a miss, never
// an error.
//
// # Faults
//
// Every method returns Redis' errors (wrapped); the etagcache Transport logs
// them and goes on without the store, so Redis being down, slow, restarted
// or failing over never fails a request. Every command runs under the
// request's context: when the client was not made with
// ContextTimeoutEnabled, the Store still returns when the context is done,
// leaving the command to finish within the client's own timeouts. Keep the
// client's DialTimeout, ReadTimeout and MaxRetries small: a dead Redis then
// costs a request that much and no more; but let WriteTimeout cover sending
// the largest body stored. go-redis reconnects by itself, so caching resumes
// when Redis is back (within about a second: after repeated failed dials
// its pool probes once a second).
package redisstore
