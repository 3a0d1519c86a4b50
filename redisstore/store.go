package redisstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/etagcache/etagcache"
)

const (
	// DefaultPrefix starts every Redis key the Store writes, unless
	// WithPrefix says otherwise.
	DefaultPrefix = "etagcache:"
	// DefaultLocalCache is the size of the local body layer unless
	// WithLocalCache says otherwise: the default bound of
	// etagcache.NewMemoryStore, so that a worker's memory is bounded as with
	// the memory store, with room for four bodies of the transport's default
	// largest entry (16 MiB).
	DefaultLocalCache = 64 << 20
	// DefaultClockSkew is how far apart the workers' clocks may be, unless
	// WithClockSkew says otherwise (see Store.Invalidate).
	DefaultClockSkew = 100 * time.Millisecond

	// bodyGrace is how much longer than header records bodies live with a
	// TTL: a body is written before the header records naming it, and must
	// not expire before them.
	bodyGrace = time.Minute
	// touchFrom is the body size from which Put first asks whether Redis
	// already holds the body (one small round trip) before sending it.
	touchFrom = 4 << 10
	// swapTries bounds the read-check-swap rounds of UpdateHeader when
	// other writers keep changing the record.
	swapTries = 3
	// tombstoneLife is how long a resource's tombstone outlives its last
	// entry (or the TTL, if longer): a request in flight for longer than
	// that when the resource was invalidated may store its answer.
	tombstoneLife = time.Hour
)

// Store is an etagcache.Store, etagcache.HeaderUpdater and
// etagcache.Invalidator kept in Redis; see the package documentation for
// its layout. It is safe for concurrent use, and any number of Stores, in
// any number of processes, may share one Redis as long as they share
// prefix and TTL.
//
// Variants starting with "~" are reserved for the Store's own fields (the
// transport never makes one): Put refuses them, Get and UpdateHeader
// report etagcache.ErrNotFound.
type Store struct {
	c      redis.UniversalClient
	prefix string
	ttl    time.Duration
	skew   time.Duration
	local  *localBodies
	// guard is set when the client does not honour context deadlines by
	// itself (ContextTimeoutEnabled unset): calls then return when the
	// context is done and leave the command to the client's timeouts.
	guard bool
}

var (
	_ etagcache.Store         = (*Store)(nil)
	_ etagcache.HeaderUpdater = (*Store)(nil)
	_ etagcache.Invalidator   = (*Store)(nil)
)

type config struct {
	prefix string
	ttl    time.Duration
	local  int64
	skew   time.Duration
}

// Option configures New.
type Option func(*config)

// WithPrefix sets the string every Redis key of the Store starts with. The
// default, also for "", is DefaultPrefix. Stores with different prefixes do
// not see each other's entries. A prefix containing a Cluster hash tag
// ({…}) puts every key on that tag's slot.
func WithPrefix(p string) Option {
	return func(c *config) { c.prefix = p }
}

// WithTTL makes the entries of a resource expire when nobody has written or
// read them for about d: header records expire d after the Put or header
// update that last wrote them, and a Get that finds less than d/2 left sets
// it back to d. Bodies live a minute longer than the header records that
// name them. As for every size and duration in etagcache, 0 means the
// default and a negative d no limit; both mean no expiry here: Redis'
// maxmemory, with an allkeys-* eviction policy, then bounds the store.
func WithTTL(d time.Duration) Option {
	return func(c *config) { c.ttl = d }
}

// WithLocalCache sets how many bytes of bodies the Store keeps in memory,
// keyed by digest, so that a revalidation of a body this worker already
// holds reads only the small header record from Redis. As for every size in
// etagcache, 0 means the default, DefaultLocalCache (64 MiB), and a
// negative maxBytes turns the layer off.
func WithLocalCache(maxBytes int64) Option {
	return func(c *config) { c.local = maxBytes }
}

// WithClockSkew sets how far apart the clocks of the workers sharing the
// Store may be. An invalidation is stamped by the invalidating worker's
// clock and a Put by the writer's (the time its request was sent), so a
// writer whose clock runs ahead could pass a response requested before the
// invalidation as one requested after it: Put therefore also drops entries
// requested up to d after an invalidation of their key. That costs a miss
// (the next request fetches and stores again), and a resource invalidated
// more often than every d is not stored at all. As for every duration in
// etagcache, 0 means the default, DefaultClockSkew (100 ms: machines kept
// by NTP agree to a few milliseconds on a LAN or in a cloud, to tens of
// them across the internet), and a negative d means no margin, for workers
// on one machine or clocks known to agree to the millisecond.
func WithClockSkew(d time.Duration) Option {
	return func(c *config) { c.skew = d }
}

var errNoClient = errors.New("redisstore: Store made with a nil client")

// New returns a Store on client, which may be a single-node, Sentinel
// (failover) or Cluster client. The Store does not close the client. A
// Store made with a nil client fails every call (and so, behind a
// Transport, caches nothing).
func New(client redis.UniversalClient, opts ...Option) *Store {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.prefix == "" {
		cfg.prefix = DefaultPrefix
	}
	if cfg.local == 0 {
		cfg.local = DefaultLocalCache
	}
	if cfg.skew == 0 {
		cfg.skew = DefaultClockSkew
	}
	return &Store{c: client, prefix: cfg.prefix, ttl: max(cfg.ttl, 0), skew: max(cfg.skew, 0), local: newLocalBodies(cfg.local), guard: !honoursContext(client)}
}

// honoursContext reports whether the client bounds its network calls by
// the context's deadline.
func honoursContext(c redis.UniversalClient) bool {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// LocalStats reports the number of bodies held by the local layer and their
// total size in bytes.
func (s *Store) LocalStats() (bodies int, size int64) { return s.local.stats() }

// Get implements etagcache.Store. It reads the header record from Redis and
// the body from the local layer, or from Redis (verified against its digest)
// when this worker does not hold it. A corrupt header record, and one whose
// body is gone or does not match, is removed and reported as
// etagcache.ErrNotFound.
func (s *Store) Get(ctx context.Context, key, variant string) (*etagcache.Entry, error) {
	return guarded(s, ctx, func() (*etagcache.Entry, error) { return s.get(ctx, key, variant) })
}

func (s *Store) get(ctx context.Context, key, variant string) (*etagcache.Entry, error) {
	if strings.HasPrefix(variant, reservedPrefix) {
		return nil, etagcache.ErrNotFound
	}
	hk := headerKey(s.prefix, key)
	raw, rec, pttl, err := s.read(ctx, hk, variant)
	if err != nil {
		return nil, err
	}
	if pttl >= 0 && pttl < s.ttl/2 {
		s.refresh(ctx, hk, rec)
	}
	e := rec.entry
	if rec.bodyLen == 0 {
		return e, nil // decodeRecord checked that the record names the empty body
	}
	if body, ok := s.local.get(rec.digest); ok && uint64(len(body)) == rec.bodyLen {
		e.Body = body
		return e, nil
	}
	bk := bodyKey(s.prefix, rec.digest)
	body, err := s.c.Get(ctx, bk).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		// Evicted or expired: the header record is useless without it.
		return nil, s.drop(ctx, hk, variant, raw)
	case err != nil:
		return nil, fmt.Errorf("redisstore: get body: %w", err)
	case uint64(len(body)) != rec.bodyLen || sha256.Sum256(body) != rec.digest:
		// Not what its name says: nobody can use it.
		if err := s.c.Del(ctx, bk).Err(); err != nil {
			return nil, fmt.Errorf("redisstore: delete corrupt body: %w", err)
		}
		return nil, s.drop(ctx, hk, variant, raw)
	}
	s.local.put(rec.digest, body)
	e.Body = body
	return e, nil
}

// read returns the header record of variant in hash hk, raw and decoded.
// A corrupt record is removed and reported as ErrNotFound. With a TTL, it
// also returns the hash's remaining time to live (-1 when unknown).
func (s *Store) read(ctx context.Context, hk, variant string) ([]byte, record, time.Duration, error) {
	var raw []byte
	var err error
	pttl := time.Duration(-1)
	if s.ttl > 0 {
		var v []any
		if v, err = readScript.Run(ctx, s.c, []string{hk}, variant).Slice(); err == nil {
			var str string
			var ms int64
			ok := len(v) == 2
			if ok {
				str, ok = v[0].(string)
			}
			if ok {
				ms, ok = v[1].(int64)
			}
			if !ok {
				return nil, record{}, 0, fmt.Errorf("redisstore: unexpected reply %v to the read script", v)
			}
			raw, pttl = []byte(str), time.Duration(ms)*time.Millisecond
		}
	} else {
		raw, err = s.c.HGet(ctx, hk, variant).Bytes()
	}
	if errors.Is(err, redis.Nil) {
		return nil, record{}, 0, etagcache.ErrNotFound
	}
	if err != nil {
		return nil, record{}, 0, fmt.Errorf("redisstore: get header record: %w", err)
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return nil, record{}, 0, s.drop(ctx, hk, variant, raw)
	}
	return raw, rec, pttl, nil
}

// refresh extends the life of a resource that is still being read, body
// first so that it never expires before the header records naming it.
// Without it, an entry confirmed by 304s that change nothing but Date (the
// transport then writes nothing) would expire TTL after its last write and
// be downloaded again. Failures only shorten the entry's life: they are not
// reported.
func (s *Store) refresh(ctx context.Context, hk string, rec record) {
	if rec.bodyLen > 0 {
		held, err := s.c.PExpire(ctx, bodyKey(s.prefix, rec.digest), s.ttl+bodyGrace).Result()
		if err != nil || !held {
			return
		}
	}
	_ = s.c.PExpire(ctx, hk, s.ttl).Err()
}

// drop removes the header record raw of variant from hash hk, unless it was
// replaced meanwhile, and returns ErrNotFound, or the error that kept it
// from doing so.
func (s *Store) drop(ctx context.Context, hk, variant string, raw []byte) error {
	if err := dropScript.Run(ctx, s.c, []string{hk}, variant, sha1Hex(raw), s.tombLife().Milliseconds()).Err(); err != nil {
		return fmt.Errorf("redisstore: remove unusable header record: %w", err)
	}
	return etagcache.ErrNotFound
}

// Put implements etagcache.Store. The body is written first, under its
// digest (not sent again when Redis already holds it), then the header
// record naming it, so a reader never finds a header record whose body was
// not written. The script that writes the header record first checks the
// resource's tombstone (see Invalidate): an entry requested before an
// invalidation, or less than the clock-skew margin after it, is dropped
// there, and its body, already written, is left to the TTL or eviction,
// as old versions of bodies are.
func (s *Store) Put(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	if e == nil {
		return errors.New("redisstore: Put of a nil entry")
	}
	_, err := guarded(s, ctx, func() (struct{}, error) { return struct{}{}, s.put(ctx, key, variant, e) })
	return err
}

func (s *Store) put(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	if strings.HasPrefix(variant, reservedPrefix) {
		return fmt.Errorf("redisstore: variant %q is reserved", variant)
	}
	d := sha256.Sum256(e.Body)
	if len(e.Body) > 0 {
		if err := s.putBody(ctx, d, e.Body); err != nil {
			return err
		}
	}
	rec := encodeRecord(d, len(e.Body), etagcache.EncodeEntryMeta(e))
	since := requestMilli(e.RequestTime) - s.skew.Milliseconds()
	n, err := putScript.Run(ctx, s.c, []string{headerKey(s.prefix, key)}, variant, rec, s.ttl.Milliseconds(), since).Int()
	if err != nil {
		return fmt.Errorf("redisstore: put header record: %w", err)
	}
	if n == 1 {
		s.local.put(d, e.Body)
	}
	return nil
}

// putBody makes sure Redis holds body under digest d, with the body TTL.
func (s *Store) putBody(ctx context.Context, d [digestLen]byte, body []byte) error {
	bk := bodyKey(s.prefix, d)
	if len(body) >= touchFrom {
		// Another worker, or another variant, may have stored it already:
		// refresh it instead of sending it again.
		var held bool
		var err error
		if s.ttl > 0 {
			held, err = s.c.PExpire(ctx, bk, s.ttl+bodyGrace).Result()
		} else {
			var n int64
			n, err = s.c.Touch(ctx, bk).Result()
			held = n > 0
		}
		if err != nil {
			return fmt.Errorf("redisstore: check body: %w", err)
		}
		if held {
			return nil
		}
	}
	var exp time.Duration
	if s.ttl > 0 {
		exp = s.ttl + bodyGrace
	}
	if err := s.c.Set(ctx, bk, body, exp).Err(); err != nil {
		return fmt.Errorf("redisstore: put body: %w", err)
	}
	return nil
}

// UpdateHeader implements etagcache.HeaderUpdater: it replaces the metadata
// of the stored entry with that of e and keeps its body, in one atomic
// check-and-set on the header record, which names the body by its SHA-256.
// When the record names another body than e.Body, the stored entry fails
// e.SameValidators, is missing or corrupt, or keeps being replaced by other
// writers, nothing is written and it returns etagcache.ErrNotFound. The
// body that Get took from the local layer is recognised there without
// hashing it; any other e.Body is hashed.
func (s *Store) UpdateHeader(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	if e == nil {
		return errors.New("redisstore: UpdateHeader with a nil entry")
	}
	_, err := guarded(s, ctx, func() (struct{}, error) { return struct{}{}, s.updateHeader(ctx, key, variant, e) })
	return err
}

func (s *Store) updateHeader(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	if strings.HasPrefix(variant, reservedPrefix) {
		return etagcache.ErrNotFound
	}
	hk := headerKey(s.prefix, key)
	meta := etagcache.EncodeEntryMeta(e)
	for range swapTries {
		raw, prev, _, err := s.read(ctx, hk, variant)
		if err != nil {
			return err
		}
		if !prev.entry.SameValidators(e) || !s.names(prev, e.Body) {
			return etagcache.ErrNotFound // another representation was stored meanwhile
		}
		if s.ttl > 0 && prev.bodyLen > 0 {
			// The header record's new expiry must not outlive its body.
			held, err := s.c.PExpire(ctx, bodyKey(s.prefix, prev.digest), s.ttl+bodyGrace).Result()
			if err != nil {
				return fmt.Errorf("redisstore: refresh body: %w", err)
			}
			if !held {
				return s.drop(ctx, hk, variant, raw)
			}
		}
		rec := encodeRecord(prev.digest, int(prev.bodyLen), meta)
		n, err := swapScript.Run(ctx, s.c, []string{hk}, variant, sha1Hex(raw), rec, s.ttl.Milliseconds()).Int()
		if err != nil {
			return fmt.Errorf("redisstore: update header record: %w", err)
		}
		if n == 1 {
			return nil
		}
	}
	return etagcache.ErrNotFound
}

// names reports whether rec names body. The swap that follows compares the
// whole record, digest included, so the check holds for what it replaces.
func (s *Store) names(rec record, body []byte) bool {
	if uint64(len(body)) != rec.bodyLen {
		return false
	}
	if len(body) == 0 {
		return true // decodeRecord saw to the digest
	}
	if held, ok := s.local.get(rec.digest); ok && len(held) == len(body) && &held[0] == &body[0] {
		return true
	}
	return sha256.Sum256(body) == rec.digest
}

// Delete implements etagcache.Store: the header records of every variant of
// key go in one script. Bodies stay, since other entries may name them;
// they are reclaimed by the TTL or by Redis' eviction. A tombstone (see
// Invalidate) stays too: removing entries makes no older response fresher.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := guarded(s, ctx, func() (struct{}, error) {
		if err := deleteScript.Run(ctx, s.c, []string{headerKey(s.prefix, key)}, s.tombLife().Milliseconds()).Err(); err != nil {
			return struct{}{}, fmt.Errorf("redisstore: delete: %w", err)
		}
		return struct{}{}, nil
	})
	return err
}

// Invalidate implements etagcache.Invalidator, in one script on the
// resource's hash: every header record goes, and the hash keeps a
// tombstone, a field holding at (in ms), which the script of every later
// Put checks in the same atomic step as its write, at no extra round
// trip. A Put of an entry requested before at, or less than the
// clock-skew margin (WithClockSkew, 100 ms by default) after it, is
// dropped. Workers on different machines need clocks that agree within
// that margin.
//
// The tombstone lives as long as the resource's entries do (it stays
// through Puts, header updates and Delete), and at least an hour, or the
// TTL if longer, after the invalidation or the last entry's removal: a
// request that was in flight for longer than that when the resource was
// invalidated may store its older answer. Bodies stay, as with Delete.
func (s *Store) Invalidate(ctx context.Context, key string, at time.Time) error {
	_, err := guarded(s, ctx, func() (struct{}, error) {
		ms := invalidationMilli(at)
		if err := invalidateScript.Run(ctx, s.c, []string{headerKey(s.prefix, key)}, ms, s.tombLife().Milliseconds()).Err(); err != nil {
			return struct{}{}, fmt.Errorf("redisstore: invalidate: %w", err)
		}
		return struct{}{}, nil
	})
	return err
}

// tombLife is how long a tombstone outlasts the entries of its resource.
func (s *Store) tombLife() time.Duration { return max(s.ttl, tombstoneLife) }

// Times in ms for the scripts; a zero request time is before any
// invalidation. Lua's numbers are doubles: within ±2^53 they are exact.
const zeroMilli = -(1 << 53)

func requestMilli(t time.Time) int64 {
	if t.IsZero() {
		return zeroMilli
	}
	return t.UnixMilli()
}

func invalidationMilli(t time.Time) int64 {
	if t.IsZero() {
		return zeroMilli + 1
	}
	return t.UnixMilli()
}

// guarded runs f, which must use ctx for every command. When the client
// bounds its commands by ctx by itself, or ctx can never be done, f runs
// here; otherwise it runs in its own goroutine and guarded returns ctx's
// error as soon as ctx is done, leaving f to finish within the client's
// timeouts (its result is then dropped).
func guarded[T any](s *Store, ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if s.c == nil {
		return zero, errNoClient
	}
	if !s.guard || ctx.Done() == nil {
		return f()
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1) // f never blocks on a caller that left
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("redisstore: %w", context.Cause(ctx))
	}
}
