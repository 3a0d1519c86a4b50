package httpcachestore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
)

// backends are the httpcache.Cache implementations every conformance test
// runs against.
var backends = []struct {
	name string
	new  func(t *testing.T) httpcache.Cache
}{
	{"memory", func(*testing.T) httpcache.Cache { return httpcache.NewMemoryCache() }},
	{"disk", func(t *testing.T) httpcache.Cache { return diskcache.New(t.TempDir()) }},
	// A memory cache that also fails the test on any key memcache would
	// refuse, so the whole table checks the key scheme too.
	{"memcache-keys", func(t *testing.T) httpcache.Cache {
		return &memcacheKeyCheck{t: t, Cache: httpcache.NewMemoryCache()}
	}},
}

func forEachBackend(t *testing.T, f func(t *testing.T, c httpcache.Cache, s etagcache.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			c := b.new(t)
			f(t, c, httpcachestore.New(c))
		})
	}
}

// memcacheKeyCheck reports keys that github.com/bradfitz/gomemcache would
// reject, once prefixed by httpcache's memcache backend.
type memcacheKeyCheck struct {
	t *testing.T
	httpcache.Cache
}

func (m *memcacheKeyCheck) check(key string) {
	full := "httpcache:" + key
	if len(full) > 250 {
		m.t.Errorf("key %q longer than memcache allows", key)
	}
	for i := 0; i < len(full); i++ {
		if full[i] <= ' ' || full[i] == 0x7f {
			m.t.Errorf("key %q has a byte memcache refuses", key)
			break
		}
	}
}

func (m *memcacheKeyCheck) Get(key string) ([]byte, bool) { m.check(key); return m.Cache.Get(key) }
func (m *memcacheKeyCheck) Set(key string, b []byte)      { m.check(key); m.Cache.Set(key, b) }
func (m *memcacheKeyCheck) Delete(key string)             { m.check(key); m.Cache.Delete(key) }

func sampleEntry(body string) *etagcache.Entry {
	digest := sha256.Sum256([]byte("gzip\x00en"))
	req := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	return &etagcache.Entry{
		Status: http.StatusOK,
		Header: http.Header{
			"Etag":          {`"v1"`},
			"Last-Modified": {"Mon, 06 May 2024 07:00:00 GMT"},
			"Content-Type":  {"text/plain; charset=utf-8"},
			"X-Multi":       {"a", "b", ""},
		},
		Body:         []byte(body),
		VaryNames:    []string{"Accept-Encoding", "Accept-Language"},
		VaryDigest:   digest[:],
		RequestTime:  req,
		ResponseTime: req.Add(1500 * time.Millisecond),
	}
}

func requireSameEntry(t *testing.T, want, got *etagcache.Entry) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.Status, got.Status)
	assert.Equal(t, want.Header, got.Header)
	assert.Equal(t, string(want.Body), string(got.Body))
	if len(want.VaryNames) > 0 || len(got.VaryNames) > 0 {
		assert.Equal(t, want.VaryNames, got.VaryNames)
	}
	assert.Equal(t, want.VaryDigest, got.VaryDigest)
	assert.True(t, want.RequestTime.Equal(got.RequestTime), "RequestTime %v, want %v", got.RequestTime, want.RequestTime)
	assert.True(t, want.ResponseTime.Equal(got.ResponseTime), "ResponseTime %v, want %v", got.ResponseTime, want.ResponseTime)
}

func requireMissing(t *testing.T, s etagcache.Store, key, variant string) {
	t.Helper()
	e, err := s.Get(context.Background(), key, variant)
	require.ErrorIs(t, err, etagcache.ErrNotFound, "key %q variant %q", key, variant)
	require.Nil(t, e)
}

func requireGet(t *testing.T, s etagcache.Store, key, variant string, want *etagcache.Entry) {
	t.Helper()
	got, err := s.Get(context.Background(), key, variant)
	require.NoError(t, err, "key %q variant %q", key, variant)
	requireSameEntry(t, want, got)
}

func put(t *testing.T, s etagcache.Store, key, variant string, e *etagcache.Entry) {
	t.Helper()
	require.NoError(t, s.Put(context.Background(), key, variant, e))
}

func inCache(c httpcache.Cache, key string) bool {
	_, ok := c.Get(key)
	return ok
}

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		e := sampleEntry("hello, world")
		put(t, s, "https://example.com/a", "v1", e)
		requireGet(t, s, "https://example.com/a", "v1", e)
		// Reading does not consume the entry.
		requireGet(t, s, "https://example.com/a", "v1", e)

		minimal := &etagcache.Entry{Status: http.StatusOK, Header: http.Header{}}
		put(t, s, "https://example.com/minimal", "", minimal)
		requireGet(t, s, "https://example.com/minimal", "", minimal)

		big := sampleEntry(strings.Repeat("0123456789abcdef", 1<<16)) // 1 MiB
		put(t, s, "https://example.com/big", "v", big)
		requireGet(t, s, "https://example.com/big", "v", big)
	})
}

func TestOddKeysAndVariants(t *testing.T) {
	odd := []string{
		"",
		" ",
		"with space",
		"nul\x00byte",
		"new\nline",
		"ünïcødé/ключ",
		"GET https://example.com/",
		"etagcache/e/" + strings.Repeat("0", 64),
		strings.Repeat("k", 10000),
	}
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		for i, key := range odd {
			for j, variant := range odd {
				put(t, s, key, variant, sampleEntry(fmt.Sprint(i, "/", j)))
			}
		}
		for i, key := range odd {
			for j, variant := range odd {
				requireGet(t, s, key, variant, sampleEntry(fmt.Sprint(i, "/", j)))
			}
		}
	})
}

func TestMissing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		requireMissing(t, s, "https://example.com/a", "v1")
		put(t, s, "https://example.com/a", "v1", sampleEntry("a"))
		requireMissing(t, s, "https://example.com/a", "v2")
		requireMissing(t, s, "https://example.com/a", "")
		requireMissing(t, s, "https://example.com/b", "v1")
		// Deleting a key that holds nothing is not an error.
		require.NoError(t, s.Delete(context.Background(), "https://example.com/nothing"))
	})
}

func TestOverwrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		first, second := sampleEntry("first"), sampleEntry("second, longer than the first")
		second.Header.Set("Etag", `"v2"`)
		second.VaryNames = nil
		second.VaryDigest = nil
		second.ResponseTime = second.ResponseTime.Add(time.Hour)
		put(t, s, "k", "v", first)
		put(t, s, "k", "v", second)
		requireGet(t, s, "k", "v", second)
		put(t, s, "k", "v", first)
		requireGet(t, s, "k", "v", first)
	})
}

func TestDeleteRemovesAllVariants(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		ctx := context.Background()
		variants := []string{"", "v1", "v2", "v3"}
		for _, v := range variants {
			put(t, s, "k1", v, sampleEntry("k1 "+v))
		}
		put(t, s, "k2", "v1", sampleEntry("k2 v1"))

		require.NoError(t, s.Delete(ctx, "k1"))
		for _, v := range variants {
			requireMissing(t, s, "k1", v)
			// The records are gone from the cache, not only unreachable.
			assert.False(t, inCache(c, httpcachestore.EntryKey("k1", v)), "entry record of variant %q left", v)
		}
		assert.False(t, inCache(c, httpcachestore.GenKey("k1")))
		assert.False(t, inCache(c, httpcachestore.IndexKey("k1")))

		requireGet(t, s, "k2", "v1", sampleEntry("k2 v1"))

		// The key can be used again, and only what is put anew is found.
		put(t, s, "k1", "v2", sampleEntry("k1 v2 again"))
		requireGet(t, s, "k1", "v2", sampleEntry("k1 v2 again"))
		requireMissing(t, s, "k1", "v1")

		require.NoError(t, s.Delete(ctx, "k1"))
		require.NoError(t, s.Delete(ctx, "k1"))
		requireMissing(t, s, "k1", "v2")
	})
}

func TestCorruptEntryRecord(t *testing.T) {
	damage := []struct {
		name string
		f    func(valid []byte) []byte
	}{
		{"empty", func([]byte) []byte { return []byte{} }},
		{"garbage", func([]byte) []byte { return []byte("definitely not an entry record") }},
		{"unknown record version", func(b []byte) []byte { b[0] = 0xff; return b }},
		{"token only", func(b []byte) []byte { return b[:17] }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }},
		{"bad entry magic", func(b []byte) []byte { b[17] ^= 0xff; return b }},
		{"other token", func(b []byte) []byte { b[1] ^= 0xff; return b }},
		{"torn body byte", func(b []byte) []byte { b[len(b)-6] ^= 0x01; return b }},
		{"bad checksum", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
				put(t, s, "k", "bad", sampleEntry("bad"))
				put(t, s, "k", "good", sampleEntry("good"))
				ek := httpcachestore.EntryKey("k", "bad")
				valid, ok := c.Get(ek)
				require.True(t, ok, "entry record not under the computed key")
				c.Set(ek, d.f(append([]byte(nil), valid...)))

				requireMissing(t, s, "k", "bad")
				assert.False(t, inCache(c, ek), "corrupt record not removed")
				requireGet(t, s, "k", "good", sampleEntry("good"))

				put(t, s, "k", "bad", sampleEntry("bad again"))
				requireGet(t, s, "k", "bad", sampleEntry("bad again"))
			})
		})
	}
}

func TestCorruptGenerationRecord(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		put(t, s, "k", "v1", sampleEntry("v1"))
		put(t, s, "k", "v2", sampleEntry("v2"))
		c.Set(httpcachestore.GenKey("k"), []byte("junk"))
		requireMissing(t, s, "k", "v1")
		requireMissing(t, s, "k", "v2")

		put(t, s, "k", "v1", sampleEntry("v1 again"))
		requireGet(t, s, "k", "v1", sampleEntry("v1 again"))
		requireMissing(t, s, "k", "v2")
	})
}

func TestCorruptIndexRecord(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		put(t, s, "k", "v1", sampleEntry("v1"))
		c.Set(httpcachestore.IndexKey("k"), []byte("junk"))
		put(t, s, "k", "v2", sampleEntry("v2"))
		requireGet(t, s, "k", "v1", sampleEntry("v1"))
		requireGet(t, s, "k", "v2", sampleEntry("v2"))

		require.NoError(t, s.Delete(context.Background(), "k"))
		requireMissing(t, s, "k", "v1")
		requireMissing(t, s, "k", "v2")
	})
}

// A Put that raced a Delete and wrote its entry record after the Delete must
// not make the entry visible: its generation is gone.
func TestStaleEntryRecordNotServed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		ek := httpcachestore.EntryKey("k", "v1")
		put(t, s, "k", "v1", sampleEntry("old"))
		old, ok := c.Get(ek)
		require.True(t, ok)
		old = append([]byte(nil), old...)

		require.NoError(t, s.Delete(context.Background(), "k"))
		put(t, s, "k", "v2", sampleEntry("new"))
		c.Set(ek, old)

		requireMissing(t, s, "k", "v1")
		assert.False(t, inCache(c, ek), "stale record not removed")
		requireGet(t, s, "k", "v2", sampleEntry("new"))
	})
}

// The same race, interleaved deterministically inside Put: the Delete runs
// after Put has read the key's generation, just before it writes the entry.
func TestDeleteDuringPut(t *testing.T) {
	for _, existing := range []bool{false, true} {
		t.Run(fmt.Sprintf("key existed=%v", existing), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, c httpcache.Cache, _ etagcache.Store) {
				ctx := context.Background()
				hc := &hookCache{Cache: c}
				s := httpcachestore.New(hc)
				if existing {
					put(t, s, "k", "other", sampleEntry("other"))
				}
				ek := httpcachestore.EntryKey("k", "v")
				hc.beforeSet = func(key string) {
					if key == ek {
						hc.beforeSet = nil
						require.NoError(t, s.Delete(ctx, "k"))
					}
				}
				put(t, s, "k", "v", sampleEntry("raced"))
				require.Nil(t, hc.beforeSet, "hook did not run")
				requireMissing(t, s, "k", "v")
				requireMissing(t, s, "k", "other")
			})
		})
	}
}

// hookCache runs beforeSet, on the calling goroutine, before every Set.
type hookCache struct {
	httpcache.Cache
	beforeSet func(key string)
}

func (h *hookCache) Set(key string, b []byte) {
	if f := h.beforeSet; f != nil {
		f(key)
	}
	h.Cache.Set(key, b)
}

// Concurrent Puts of new variants may lose a line of the index. The variant
// named there is then not reclaimed by Delete, but it is still invalidated.
func TestLostIndexLine(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		put(t, s, "k", "v1", sampleEntry("v1"))
		index, ok := c.Get(httpcachestore.IndexKey("k"))
		require.True(t, ok)
		index = append([]byte(nil), index...)
		put(t, s, "k", "v2", sampleEntry("v2"))
		c.Set(httpcachestore.IndexKey("k"), index) // v2's line lost

		require.NoError(t, s.Delete(context.Background(), "k"))
		requireMissing(t, s, "k", "v1")
		requireMissing(t, s, "k", "v2")
		assert.True(t, inCache(c, httpcachestore.EntryKey("k", "v2")), "unindexed record should be left")

		put(t, s, "k", "v1", sampleEntry("v1 again"))
		requireMissing(t, s, "k", "v2")
		assert.False(t, inCache(c, httpcachestore.EntryKey("k", "v2")), "stale record read but not removed")
		requireGet(t, s, "k", "v1", sampleEntry("v1 again"))
	})
}

// A backend may evict any record on its own. Losing the generation record
// hides the key's entries; it must never bring older ones back.
func TestGenerationRecordEvicted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		put(t, s, "k", "v1", sampleEntry("v1"))
		c.Delete(httpcachestore.GenKey("k"))
		requireMissing(t, s, "k", "v1")

		put(t, s, "k", "v2", sampleEntry("v2"))
		requireMissing(t, s, "k", "v1")
		requireGet(t, s, "k", "v2", sampleEntry("v2"))
	})
}

func TestIndexIsBounded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		e := sampleEntry("x")
		n := httpcachestore.MaxIndexed + 2
		for i := range n {
			put(t, s, "k", fmt.Sprint("v", i), e)
		}
		index, ok := c.Get(httpcachestore.IndexKey("k"))
		require.True(t, ok)
		assert.Equal(t, 1+httpcachestore.MaxIndexed*sha256.Size, len(index))
		// The two oldest variants were evicted to make room.
		for i := range 2 {
			requireMissing(t, s, "k", fmt.Sprint("v", i))
			assert.False(t, inCache(c, httpcachestore.EntryKey("k", fmt.Sprint("v", i))))
		}
		requireGet(t, s, "k", "v2", e)
		requireGet(t, s, "k", fmt.Sprint("v", n-1), e)

		require.NoError(t, s.Delete(context.Background(), "k"))
		for i := range n {
			assert.False(t, inCache(c, httpcachestore.EntryKey("k", fmt.Sprint("v", i))), "variant %d left", i)
		}
	})
}

func TestCancelledContext(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		put(t, s, "k", "v", sampleEntry("kept"))

		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		e, err := s.Get(ctx, "k", "v")
		require.ErrorIs(t, err, context.Canceled)
		require.Nil(t, e)
		require.ErrorIs(t, s.Put(ctx, "k2", "v", sampleEntry("not stored")), context.Canceled)
		require.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)

		dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer dcancel()
		_, err = s.Get(dctx, "k", "v")
		require.ErrorIs(t, err, context.DeadlineExceeded)

		// Nothing was done on the cancelled calls.
		requireMissing(t, s, "k2", "v")
		requireGet(t, s, "k", "v", sampleEntry("kept"))
	})
}

func TestNilEntry(t *testing.T) {
	s := httpcachestore.New(httpcache.NewMemoryCache())
	require.Error(t, s.Put(context.Background(), "k", "v", nil))
	requireMissing(t, s, "k", "v")
}

func TestNilCachePanics(t *testing.T) {
	assert.Panics(t, func() { httpcachestore.New(nil) })
}

// httpcache backends rewrite whole values and cannot compare-and-swap, so
// the store offers no metadata update and the transport falls back to Put.
func TestNoHeaderUpdater(t *testing.T) {
	_, ok := httpcachestore.New(httpcache.NewMemoryCache()).(etagcache.HeaderUpdater)
	assert.False(t, ok)
}

// Two representations sharing an ETag (two tenants under Vary): A reads its
// entry, B stores its own in the slot, then A's 304 is persisted by the
// transport's fallback, a Put of A's entry with the new header. The slot
// then holds A's entry whole: never A's header on B's body.
func TestRevalidationPutNeverMixes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, _ httpcache.Cache, s etagcache.Store) {
		ctx := context.Background()
		a, b := sampleEntry("tenant=a v=1"), sampleEntry("tenant=b v=1")
		b.VaryDigest = []byte("digest of tenant b")
		require.NoError(t, s.Put(ctx, "k", "", a))
		got, err := s.Get(ctx, "k", "")
		require.NoError(t, err)
		require.NoError(t, s.Put(ctx, "k", "", b))

		u := *got
		u.Header = got.Header.Clone()
		u.Header.Set("X-Revalidated", "1")
		require.NoError(t, s.Put(ctx, "k", "", &u))
		stored, err := s.Get(ctx, "k", "")
		require.NoError(t, err)
		assert.Equal(t, "tenant=a v=1", string(stored.Body))
		assert.Equal(t, "1", stored.Header.Get("X-Revalidated"))
		assert.Equal(t, a.VaryDigest, stored.VaryDigest)
	})
}

func TestCacheKeys(t *testing.T) {
	// The keys are part of the persistent format: changing them orphans
	// every record already in a cache.
	// (SHA-256 of "etagcache/httpcachestore/1\x00", a kind byte 'e' or 'k',
	// the key's uvarint length, the key and, for 'e', the variant.)
	assert.Equal(t, "etagcache/e/3f6822ce15f8884f79b3409e7e68e22f0327eedabf4d0cc47dd9ac6a1f4c4fbb", httpcachestore.EntryKey("https://example.com/", "v"))
	assert.Equal(t, "etagcache/g/6f3805d2ac831dce5010f4e8dcb767f5899828a31c0b31664f3bc2f863e0e6ed", httpcachestore.GenKey("https://example.com/"))
	assert.Equal(t, "etagcache/i/6f3805d2ac831dce5010f4e8dcb767f5899828a31c0b31664f3bc2f863e0e6ed", httpcachestore.IndexKey("https://example.com/"))

	// Key and variant are delimited, not just concatenated.
	assert.NotEqual(t, httpcachestore.EntryKey("ab", "c"), httpcachestore.EntryKey("a", "bc"))
	assert.NotEqual(t, httpcachestore.EntryKey("k", ""), httpcachestore.GenKey("k")[12:])

	seen := map[string]bool{}
	for _, k := range []string{"", "a", "b", strings.Repeat("x", 100000)} {
		for _, v := range []string{"", "a", "b"} {
			ek := httpcachestore.EntryKey(k, v)
			assert.Len(t, ek, 76)
			assert.False(t, seen[ek], "duplicate key %q", ek)
			seen[ek] = true
		}
		for _, key := range []string{httpcachestore.GenKey(k), httpcachestore.IndexKey(k)} {
			assert.Len(t, key, 76)
			assert.False(t, seen[key], "duplicate key %q", key)
			seen[key] = true
		}
	}
}

// The store can share a cache with an httpcache.Transport without either
// disturbing the other, even when the etagcache key is the very URL
// httpcache uses as its key.
func TestSharesCacheWithHTTPCache(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		io.WriteString(w, "from origin")
	}))
	defer origin.Close()

	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		ctx := context.Background()
		client := httpcache.NewTransport(c).Client()
		resp, err := client.Get(origin.URL)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())

		req, err := http.NewRequest(http.MethodGet, origin.URL, nil)
		require.NoError(t, err)
		cached, err := httpcache.CachedResponse(c, req)
		require.NoError(t, err)
		require.NotNil(t, cached, "httpcache did not cache the response")
		cached.Body.Close()

		put(t, s, origin.URL, "", sampleEntry("ours"))
		requireGet(t, s, origin.URL, "", sampleEntry("ours"))
		require.NoError(t, s.Delete(ctx, origin.URL))
		requireMissing(t, s, origin.URL, "")

		cached, err = httpcache.CachedResponse(c, req)
		require.NoError(t, err)
		require.NotNil(t, cached, "httpcache's entry was disturbed")
		body, err := io.ReadAll(cached.Body)
		cached.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, "from origin", string(body))
	})
}

func TestConcurrentUse(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c httpcache.Cache, s etagcache.Store) {
		ctx := context.Background()
		keys := []string{"k0", "k1", "k2"}
		variants := []string{"", "v1", "v2"}
		const workers, ops = 8, 300
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range ops {
					key := keys[(w+i)%len(keys)]
					variant := variants[(w*7+i)%len(variants)]
					switch i % 5 {
					case 0, 1:
						body := fmt.Sprintf("%s|%s|%d|%d", key, variant, w, i)
						if err := s.Put(ctx, key, variant, sampleEntry(body)); err != nil {
							t.Errorf("Put: %v", err)
						}
					case 2, 3:
						e, err := s.Get(ctx, key, variant)
						switch {
						case errors.Is(err, etagcache.ErrNotFound):
						case err != nil:
							t.Errorf("Get: %v", err)
						case !strings.HasPrefix(string(e.Body), key+"|"+variant+"|"):
							t.Errorf("Get(%q, %q) returned body %q", key, variant, e.Body)
						}
					case 4:
						if err := s.Delete(ctx, key); err != nil {
							t.Errorf("Delete: %v", err)
						}
					}
				}
			})
		}
		wg.Wait()

		for _, key := range keys {
			require.NoError(t, s.Delete(ctx, key))
			for _, v := range variants {
				requireMissing(t, s, key, v)
			}
		}
	})
}
