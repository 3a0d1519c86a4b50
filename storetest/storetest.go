package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// Option configures Run.
type Option func(*config)

type config struct {
	damage func(t *testing.T, s etagcache.Store, key, variant string)
	flush  func(s etagcache.Store) error
}

func newConfig(opts []Option) config {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	return cfg
}

// WithDamage gives Run a way to damage what the store keeps: damage must
// change the stored bytes of the entry under key and variant (flip a bit of
// its record, as a failing disk or a torn write would) so that the store's
// own checks catch it. Without it the subtest of damaged records is
// skipped.
func WithDamage(damage func(t *testing.T, s etagcache.Store, key, variant string)) Option {
	return func(c *config) { c.damage = damage }
}

// WithFlush tells RunSharedValidator how to make what a store was given
// visible to other handles onto the same data, for stores that write
// behind (whose Put returns before other processes can read the entry): it
// is called after every Put through either handle. Without it, two such
// handles may not reproduce the race RunSharedValidator is about, which
// then checks only that the slot ends up whole and no request gets another
// tenant's body.
func WithFlush(flush func(s etagcache.Store) error) Option {
	return func(c *config) { c.flush = flush }
}

// Run runs the conformance suite, one subtest per property, each on a new
// store from newStore. See the package documentation for what it checks.
func Run(t *testing.T, newStore func(t *testing.T) etagcache.Store, opts ...Option) {
	cfg := newConfig(opts)
	t.Run("MissIsNotFound", func(t *testing.T) { testMiss(t, newStore(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("EntriesNotModified", func(t *testing.T) { testNotModified(t, newStore(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStore(t)) })
	t.Run("UpdateHeader", func(t *testing.T) { testUpdateHeader(t, newStore(t)) })
	t.Run("UpdateHeaderRefusesOtherBody", func(t *testing.T) { testUpdateOtherBody(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, newStore(t)) })
	t.Run("EmptyAndLargeBodies", func(t *testing.T) { testBodySizes(t, newStore(t)) })
	t.Run("DamagedRecordIsMiss", func(t *testing.T) {
		if cfg.damage == nil {
			t.Skip("no WithDamage hook for this store")
		}
		testDamaged(t, newStore(t), cfg.damage)
	})
	t.Run("SharedValidator", func(t *testing.T) {
		s := newStore(t)
		runSharedValidator(t, s, s, true, cfg)
	})
	t.Run("Invalidate", func(t *testing.T) { testInvalidate(t, newStore(t)) })
	t.Run("InvalidateMany", func(t *testing.T) { testInvalidateMany(t, newStore(t)) })
	t.Run("InvalidateConcurrent", func(t *testing.T) { testInvalidateConcurrent(t, newStore(t)) })
}

var bg = context.Background()

func mustGet(t testing.TB, s etagcache.Store, key, variant string) *etagcache.Entry {
	t.Helper()
	e, err := s.Get(bg, key, variant)
	require.NoError(t, err, "Get(%q, %q)", key, variant)
	require.NotNil(t, e, "Get(%q, %q) returned no entry and no error", key, variant)
	return e
}

func requireMissing(t testing.TB, s etagcache.Store, key, variant string) {
	t.Helper()
	e, err := s.Get(bg, key, variant)
	require.ErrorIs(t, err, etagcache.ErrNotFound, "Get(%q, %q) = %v", key, variant, e)
}

func testMiss(t *testing.T, s etagcache.Store) {
	requireMissing(t, s, "https://example.com/", "")
	require.NoError(t, s.Put(bg, "https://example.com/", "", sample("a", []byte("a"))))
	requireMissing(t, s, "https://example.com/", "other variant")
	requireMissing(t, s, "https://example.com/other", "")
	requireMissing(t, s, "https://example.com", "")
}

func testRoundTrip(t *testing.T, s etagcache.Store) {
	long := strings.Repeat("https://example.com/very/long/path?", 2000)
	cases := []struct{ key, variant string }{
		{"https://example.com/a", ""},
		{"https://example.com/a", "9f86d081884c7d65/2c26b46b68ffc68f"},
		{"https://example.com/a?q=1&r=%20", "v"},
		{"key\x00with\x00nul", "variant\x00"},
		{"https://example.com/ünïcödé", "ü"},
		{long, strings.Repeat("x", 4000)},
	}
	want := map[[2]string]*etagcache.Entry{}
	for i, c := range cases {
		e := sample(fmt.Sprint("entry", i), []byte(fmt.Sprintf("body %d of %.20q", i, c.key)))
		switch i {
		case 1:
			e.Status = 203
		case 2:
			e.Status, e.VaryNames, e.VaryDigest = 404, nil, nil
		case 3:
			e.Header["Set-Like"] = []string{"a", "a", ""} // repeated and empty values keep their order
		}
		require.NoError(t, s.Put(bg, c.key, c.variant, e))
		want[[2]string{c.key, c.variant}] = snapshot(e)
	}
	for k, e := range want {
		requireSame(t, e, mustGet(t, s, k[0], k[1]), "key %.40q variant %.40q", k[0], k[1])
	}
	// A Put replaces the entry, every field of it.
	k := cases[0]
	repl := sample("replacement", []byte("replacement body"))
	repl.Header = repl.Header.Clone()
	delete(repl.Header, "Link")
	repl.VaryNames = []string{"Accept"}
	require.NoError(t, s.Put(bg, k.key, k.variant, repl))
	requireSame(t, repl, mustGet(t, s, k.key, k.variant), "after a replacing Put")
	requireSame(t, want[[2]string{cases[1].key, cases[1].variant}], mustGet(t, s, cases[1].key, cases[1].variant), "a Put changed another variant")
}

// The store never writes into an entry it was given or handed out: the
// transport shares them (the memory store keeps what it was given, and
// hands it out on every hit, without copying).
func testNotModified(t *testing.T, s etagcache.Store) {
	const key = "https://example.com/immutable"
	given := sample("given", []byte("body of the given entry"))
	givenSnap := snapshot(given)
	require.NoError(t, s.Put(bg, key, "", given))
	got := mustGet(t, s, key, "")
	gotSnap := snapshot(got)

	if hu, ok := s.(etagcache.HeaderUpdater); ok {
		require.NoError(t, hu.UpdateHeader(bg, key, "", updated(got, "X-Name", "changed", "X-New", "1")))
		upd := mustGet(t, s, key, "")
		assert.Equal(t, "changed", upd.Header.Get("X-Name"))
		assertUnchanged(t, givenSnap, given, "the entry given to Put, by UpdateHeader,")
		assertUnchanged(t, gotSnap, got, "an entry Get returned, by UpdateHeader,")
	}
	other := sample("other", []byte("body of another entry, longer than the first"))
	require.NoError(t, s.Put(bg, key, "", other))
	require.NoError(t, s.Put(bg, key, "second", sample("second", []byte("x"))))
	assertUnchanged(t, givenSnap, given, "the entry given to Put, by a later Put,")
	assertUnchanged(t, gotSnap, got, "an entry Get returned, by a later Put,")
	require.NoError(t, s.Delete(bg, key))
	assertUnchanged(t, givenSnap, given, "the entry given to Put, by Delete,")
	assertUnchanged(t, gotSnap, got, "an entry Get returned, by Delete,")
}

func testDelete(t *testing.T, s etagcache.Store) {
	const key, other = "https://example.com/d", "https://example.com/d2"
	for _, v := range []string{"", "v1", "v2"} {
		require.NoError(t, s.Put(bg, key, v, sample("d"+v, []byte("body "+v))))
	}
	keep := sample("keep", []byte("kept"))
	require.NoError(t, s.Put(bg, other, "", keep))
	require.NoError(t, s.Delete(bg, key))
	for _, v := range []string{"", "v1", "v2"} {
		requireMissing(t, s, key, v)
	}
	requireSame(t, keep, mustGet(t, s, other, ""), "Delete of another key")
	require.NoError(t, s.Delete(bg, key), "deleting a key again")
	require.NoError(t, s.Delete(bg, "https://example.com/never-stored"), "deleting a key never stored")
	// The key works again after its Delete.
	again := sample("again", []byte("stored after the delete"))
	require.NoError(t, s.Put(bg, key, "v1", again))
	requireSame(t, again, mustGet(t, s, key, "v1"))
	requireMissing(t, s, key, "")
}

func headerUpdater(t *testing.T, s etagcache.Store) etagcache.HeaderUpdater {
	hu, ok := s.(etagcache.HeaderUpdater)
	if !ok {
		t.Skip("the store is no etagcache.HeaderUpdater")
	}
	return hu
}

func testUpdateHeader(t *testing.T, s etagcache.Store) {
	hu := headerUpdater(t, s)
	const key = "https://example.com/u"
	orig := sample("u", bytes.Repeat([]byte("body of u "), 300))
	require.NoError(t, s.Put(bg, key, "", orig))
	require.NoError(t, s.Put(bg, key, "beside", sample("beside", []byte("another variant"))))

	// The metadata is replaced, the body kept. A weak ETag matches.
	got := mustGet(t, s, key, "")
	u := updated(got, "Etag", `W/`+sharedTag, "X-New", "1")
	u.VaryNames, u.VaryDigest = []string{"X-Other"}, []byte("new digest")
	require.NoError(t, hu.UpdateHeader(bg, key, "", u))
	requireSame(t, u, mustGet(t, s, key, ""), "after UpdateHeader")
	requireSame(t, sample("beside", []byte("another variant")), mustGet(t, s, key, "beside"), "UpdateHeader changed another variant")

	// Refused, with nothing written: other validators, no entry, and a
	// body other than the stored one.
	cur := mustGet(t, s, key, "")
	want := snapshot(cur)
	refused := map[string]*etagcache.Entry{
		"other ETag": updated(cur, "Etag", `"other"`, "X-New", "2"),
		"no ETag":    updated(cur, "X-New", "3"),
		"other body": func() *etagcache.Entry { e := updated(cur, "X-New", "4"); e.Body = []byte("not the body"); return e }(),
		"other body, same length": func() *etagcache.Entry {
			e := updated(cur, "X-New", "5")
			e.Body = bytes.Clone(cur.Body)
			e.Body[len(e.Body)/2] ^= 1
			return e
		}(),
		"no body": func() *etagcache.Entry { e := updated(cur, "X-New", "6"); e.Body = nil; return e }(),
	}
	delete(refused["no ETag"].Header, "Etag")
	for name, e := range refused {
		require.ErrorIs(t, hu.UpdateHeader(bg, key, "", e), etagcache.ErrNotFound, name)
		requireSame(t, want, mustGet(t, s, key, ""), "a refused update (%s) wrote", name)
	}
	require.ErrorIs(t, hu.UpdateHeader(bg, key, "missing variant", updated(cur)), etagcache.ErrNotFound)
	requireMissing(t, s, key, "missing variant")
	require.ErrorIs(t, hu.UpdateHeader(bg, "https://example.com/missing", "", updated(cur)), etagcache.ErrNotFound)
	requireMissing(t, s, "https://example.com/missing", "")

	// The body named may be a copy of the stored one: the stores compare
	// contents, not only identity.
	c := updated(cur, "X-New", "copy")
	c.Body = bytes.Clone(cur.Body)
	require.NoError(t, hu.UpdateHeader(bg, key, "", c))
	requireSame(t, c, mustGet(t, s, key, ""), "after an update naming a copy of the body")

	// An empty body is a body too.
	const ekey = "https://example.com/empty"
	require.NoError(t, s.Put(bg, ekey, "", sample("empty", nil)))
	eg := mustGet(t, s, ekey, "")
	nonEmpty := updated(eg, "X-New", "1")
	nonEmpty.Body = []byte("x")
	require.ErrorIs(t, hu.UpdateHeader(bg, ekey, "", nonEmpty), etagcache.ErrNotFound)
	eu := updated(eg, "X-New", "2")
	eu.Body = []byte{} // empty, not nil: the same body
	require.NoError(t, hu.UpdateHeader(bg, ekey, "", eu))
	requireSame(t, eu, mustGet(t, s, ekey, ""))
}

// Two representations with one validator (one ETag for every tenant of a
// Vary: X-Tenant resource, or for gzip and identity codings): an update
// confirming the one whose entry was read must not land on the other,
// stored meanwhile.
func testUpdateOtherBody(t *testing.T, s etagcache.Store) {
	hu := headerUpdater(t, s)
	const key = "https://example.com/tenant"
	a := sample("tenant-a", []byte("tenant=a v=1"))
	require.NoError(t, s.Put(bg, key, "", a))
	got := mustGet(t, s, key, "") // A looks up, and revalidates

	b := sample("tenant-b", []byte("tenant=b v=1")) // B's miss stores its own body
	require.NoError(t, s.Put(bg, key, "", b))

	err := hu.UpdateHeader(bg, key, "", updated(got, "X-Revalidated", "1")) // A's 304
	require.ErrorIs(t, err, etagcache.ErrNotFound, "a header update landed on a body it did not confirm")
	requireSame(t, b, mustGet(t, s, key, ""), "the entry stored meanwhile")

	// Larger bodies, which some stores keep apart from the metadata.
	big := func(name string) []byte { return bytes.Repeat([]byte(name+" "), 64<<10) }
	a = sample("tenant-a", big("a"))
	require.NoError(t, s.Put(bg, key, "", a))
	got = mustGet(t, s, key, "")
	b = sample("tenant-b", big("b"))
	require.NoError(t, s.Put(bg, key, "", b))
	require.ErrorIs(t, hu.UpdateHeader(bg, key, "", updated(got, "X-Revalidated", "2")), etagcache.ErrNotFound)
	requireSame(t, b, mustGet(t, s, key, ""), "the large entry stored meanwhile")
}

func testConcurrent(t *testing.T, s etagcache.Store) {
	hu, _ := s.(etagcache.HeaderUpdater)
	keys := []string{"https://example.com/c0", "https://example.com/c1"}
	variants := []string{"", "gzip"}
	const workers, rounds = 8, 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range rounds {
				key, variant := keys[rng.IntN(len(keys))], variants[rng.IntN(len(variants))]
				switch op := rng.IntN(10); {
				case op < 4:
					if err := s.Put(bg, key, variant, tokenEntry(key, variant, rng.Uint64())); err != nil {
						fail("Put: %v", err)
					}
				case op < 8:
					e, err := s.Get(bg, key, variant)
					if errors.Is(err, etagcache.ErrNotFound) {
						continue
					}
					if err != nil {
						fail("Get: %v", err)
						continue
					}
					if msg := checkToken(e, key, variant); msg != "" {
						fail("Get(%q, %q): %s", key, variant, msg)
						continue
					}
					if hu == nil || op == 4 {
						continue
					}
					// Confirm what was read, as after a 304; another Put may
					// have replaced it meanwhile.
					err = hu.UpdateHeader(bg, key, variant, updated(e, "X-Update", fmt.Sprint(w, "-", i)))
					if err != nil && !errors.Is(err, etagcache.ErrNotFound) {
						fail("UpdateHeader: %v", err)
					}
				case op < 9:
					if hu == nil {
						continue
					}
					// An update naming a body never stored: always refused.
					foreign := tokenEntry(key, variant, rng.Uint64())
					if err := hu.UpdateHeader(bg, key, variant, foreign); !errors.Is(err, etagcache.ErrNotFound) {
						fail("UpdateHeader of a body never stored = %v, want ErrNotFound", err)
					}
				default:
					if err := s.Delete(bg, key); err != nil {
						fail("Delete: %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	for _, key := range keys {
		for _, variant := range variants {
			if e, err := s.Get(bg, key, variant); err == nil {
				assert.Empty(t, checkToken(e, key, variant), "after the run, %q %q", key, variant)
			}
		}
	}
}

func testCancelled(t *testing.T, s etagcache.Store) {
	const key = "https://example.com/cancel"
	e := sample("cancel", []byte("body"))
	require.NoError(t, s.Put(bg, key, "", e))
	got := mustGet(t, s, key, "")
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := s.Get(ctx, key, "")
	assert.ErrorIs(t, err, context.Canceled, "Get")
	assert.ErrorIs(t, s.Put(ctx, key, "v", e), context.Canceled, "Put")
	assert.ErrorIs(t, s.Delete(ctx, key), context.Canceled, "Delete")
	if hu, ok := s.(etagcache.HeaderUpdater); ok {
		assert.ErrorIs(t, hu.UpdateHeader(ctx, key, "", updated(got)), context.Canceled, "UpdateHeader")
	}
	// A cancelled call changed nothing the next ones see.
	requireSame(t, e, mustGet(t, s, key, ""))
}

func testBodySizes(t *testing.T, s etagcache.Store) {
	const key = "https://example.com/sizes"
	large := make([]byte, 17<<20+3) // more than one chunk, queue or frame of any store here
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(large)
	for name, body := range map[string][]byte{"nil": nil, "empty": {}, "one byte": {0}, "large": large} {
		e := sample(name, body)
		require.NoError(t, s.Put(bg, key, name, e), name)
		got := mustGet(t, s, key, name)
		require.Len(t, got.Body, len(body), name)
		requireSame(t, e, got, name)
	}
	if hu, ok := s.(etagcache.HeaderUpdater); ok {
		got := mustGet(t, s, key, "large")
		u := updated(got, "X-New", "1")
		require.NoError(t, hu.UpdateHeader(bg, key, "large", u))
		requireSame(t, u, mustGet(t, s, key, "large"))
	}
	require.NoError(t, s.Delete(bg, key))
	requireMissing(t, s, key, "large")
}

func testDamaged(t *testing.T, s etagcache.Store, damage func(t *testing.T, s etagcache.Store, key, variant string)) {
	const key = "https://example.com/damaged"
	keep := sample("keep", []byte("an entry beside the damaged one"))
	require.NoError(t, s.Put(bg, key, "beside", keep))
	for _, body := range [][]byte{[]byte("a small body"), bytes.Repeat([]byte("a larger body "), 20<<10), nil} {
		e := sample("damaged", body)
		require.NoError(t, s.Put(bg, key, "", e))
		damage(t, s, key, "")
		got, err := s.Get(bg, key, "")
		if err == nil {
			require.Failf(t, "a damaged record was served", "%d-byte body: %s", len(body), diff(e, got))
		}
		// Reported as a miss, or as a corrupt entry (which the transport
		// logs), once; removed, so a miss after that.
		if !errors.Is(err, etagcache.ErrCorruptEntry) {
			require.ErrorIs(t, err, etagcache.ErrNotFound, "%d-byte body", len(body))
		}
		requireMissing(t, s, key, "")
		requireSame(t, keep, mustGet(t, s, key, "beside"), "the entry beside a damaged one")

		if hu, ok := s.(etagcache.HeaderUpdater); ok {
			require.NoError(t, s.Put(bg, key, "", e))
			got := mustGet(t, s, key, "")
			damage(t, s, key, "")
			require.ErrorIs(t, hu.UpdateHeader(bg, key, "", updated(got, "X-New", "1")), etagcache.ErrNotFound, "an update of a damaged record")
			_, err := s.Get(bg, key, "")
			require.Error(t, err, "a damaged record was served after an update")
		}
	}
}
