// Package httpcachestore adapts any github.com/gregjones/httpcache Cache
// (httpcache.MemoryCache, diskcache, leveldbcache, memcache, redis, ...) to
// an etagcache.Store, so an existing httpcache backend can hold etagcache
// entries, even alongside httpcache's own responses in the same cache.
//
//	store := httpcachestore.New(diskcache.New("/var/cache/myapp"))
//	t := etagcache.NewTransport(store)
//
// # Records and keys
//
// An httpcache.Cache offers only Get, Set and Delete on single values: no
// errors, no contexts, no atomic updates and no prefix delete. The store
// therefore keeps three kinds of record:
//
//   - an entry record per (key, variant): a 16-byte generation token, the
//     entry in the form made by etagcache.EncodeEntry, and a CRC-32C of the
//     record, so that a value torn by a backend that rewrites files in place
//     (diskcache) is a miss, never a mixed body;
//   - a generation record per key, holding that key's current token;
//   - an index record per key, listing the entry records written under it.
//
// Their cache keys are "etagcache/" followed by a record kind and the
// hexadecimal SHA-256 of the (length-prefixed) key and variant, for example
// "etagcache/e/3b0c…". Such keys are at most 76 bytes of printable ASCII
// without spaces, so they are valid for every backend (memcache refuses keys
// over 250 bytes or with spaces or control characters), and they cannot be
// mistaken for the keys httpcache itself uses (absolute URLs, optionally
// preceded by a method and a space). Neither the key nor the variant appears
// in clear text in the cache.
//
// # Invalidation
//
// Delete must remove every variant of a key, but the variants cannot be
// listed atomically. Correctness rests on the generation token, not on the
// index:
//
//   - Put reads the key's token, creating a random one if there is none, and
//     stores it in the entry record.
//   - Get serves an entry only if its token equals the key's current token;
//     an entry with another token is stale, and is deleted and reported as
//     ErrNotFound.
//   - Delete deletes the generation record first. This single write is what
//     invalidates every variant: the next Put creates a fresh random token,
//     and no token ever comes back, since a Put only ever writes a token
//     record with a token it has just generated.
//
// So, whatever the interleaving of concurrent calls and even on a backend
// with no atomic operations, an entry written before a Delete began is never
// served after that Delete returned. The losing side of a race is always a
// cache miss: a Put racing a Delete, or another Put that creates the token,
// may have its entry ignored. The same holds when a backend evicts records
// on its own (memcache, redis with a maxmemory policy): losing a generation
// record makes the key's entries unreachable, never stale ones reachable.
//
// The store does not implement etagcache.Invalidator. It could remember an
// invalidation in a record of its own, but a Put could only read that
// record and then write, and an invalidation could land in between: with no
// atomic compare in the backends it would narrow the race, not close it,
// at the cost of one more read per Put. So an invalidation (after a POST,
// PUT or DELETE through the transport, or a Purge) wins over responses
// still arriving through the same Transport, which the transport itself
// tracks, but not over those of another Transport sharing the cache, in
// this process or another: a response requested before the invalidation
// that completes after it may be stored, and then served (in freshness
// mode, without revalidation, for its lifetime). Share one cache between
// Transports only where that is acceptable, or use a store that is an
// Invalidator (etagcache.MemoryStore, etagcache.BoltStore, redisstore).
//
// The index only serves to reclaim space: after deleting the generation
// record, Delete deletes every entry record the index lists, then the index.
// Put adds a variant to the index by read-modify-write, so concurrent Puts of
// new variants of one key may lose an index line; the entry it named is then
// not removed by a later Delete, only made unreachable, and stays in the
// cache until it is read (and deleted as stale), overwritten by a Put of the
// same variant, or evicted by the backend. The index holds at most 512
// variants per key; putting another evicts the oldest one.
//
// # Contexts and errors
//
// httpcache backends take no context and cannot be interrupted: every method
// returns ctx.Err() without touching the cache if the context is already
// done, but once it has started a call runs to completion. The backends also
// report no errors: a Set that fails (a memcache value over its size limit,
// a full disk) simply leaves nothing to read back, which Get reports as
// ErrNotFound. A record that cannot be decoded is deleted and reported as
// ErrNotFound.
//
// # Header updates
//
// The store does not implement etagcache.HeaderUpdater. httpcache backends
// rewrite whole values and have no compare-and-swap: an update could only
// read the record, compare its body and write it back, and another writer's
// Put could land in between, so it could not be the one atomic step that
// interface requires (and the read would move the body a second time on
// network backends). After a 304 the transport stores the whole entry again
// with Put: the header the 304 brought, with the very body it confirmed, in
// one record.
//
// So the fields of two responses never mix: every entry record is written
// whole by one Set and checked by its CRC-32C when read. What racing writers
// can cause is a lost update, the last Set winning. When two workers store
// two representations that share an ETag (tenants under Vary, gzip and
// identity coding) in one slot, a revalidation may replace the entry stored
// meanwhile with its own: whole, and right for the requests that select it;
// the other representation is fetched again the next time it is asked for.
//
// # Concurrency
//
// The store adds no locking of its own: it is safe for concurrent use when
// the backend is. httpcache.MemoryCache, diskcache, leveldbcache and memcache
// are; httpcache's redis cache wraps a single redis.Conn, which is not, so
// share one only behind a lock or use one per goroutine.
//
// The guarantees above hold between users of one cache instance, or of a
// backend whose instances share their state (memcache, redis, leveldb). A
// diskcache also keeps recently read values in memory, per process, so two
// processes using one directory may each go on reading what they cached
// after the other deleted it.
package httpcachestore
