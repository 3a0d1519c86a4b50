package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// invalidator returns s as an etagcache.Invalidator, or skips the test.
func invalidator(t *testing.T, s etagcache.Store) etagcache.Invalidator {
	iv, ok := s.(etagcache.Invalidator)
	if !ok {
		t.Skip("the store is no etagcache.Invalidator")
	}
	return iv
}

// The moments the invalidation subtests use. They are an hour apart or
// more, so that a store's margin for clock skew (which drops Puts
// requested up to that margin after an invalidation) never decides.
var (
	invalAt = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	before  = invalAt.Add(-time.Hour)
	after   = invalAt.Add(time.Hour)
)

// requested is sample with the time its request was sent.
func requested(name string, at time.Time) *etagcache.Entry {
	e := sample(name, []byte("body of "+name))
	e.RequestTime, e.ResponseTime = at, at.Add(time.Second)
	return e
}

func testInvalidate(t *testing.T, s etagcache.Store) {
	iv := invalidator(t, s)
	const key, other = "https://example.com/inval", "https://example.com/inval-other"
	for _, v := range []string{"", "v1", "v2"} {
		require.NoError(t, s.Put(bg, key, v, requested("old"+v, before)))
	}
	keep := requested("other", before)
	require.NoError(t, s.Put(bg, other, "", keep))

	// Every variant goes, and nothing else.
	require.NoError(t, iv.Invalidate(bg, key, invalAt))
	for _, v := range []string{"", "v1", "v2"} {
		requireMissing(t, s, key, v)
	}
	requireSame(t, keep, mustGet(t, s, other, ""), "Invalidate of another key")

	// Puts of entries requested before the invalidation are dropped, with
	// no error; zero counts as before.
	for name, at := range map[string]time.Time{
		"an hour before": before, "a nanosecond before": invalAt.Add(-1), "zero": {},
	} {
		require.NoError(t, s.Put(bg, key, "", requested("old", at)), name)
		requireMissing(t, s, key, "")
		require.NoError(t, s.Put(bg, key, "v1", requested("old", at)), name)
		requireMissing(t, s, key, "v1")
	}
	// Under other keys they are not.
	older := requested("older elsewhere", before)
	require.NoError(t, s.Put(bg, other, "v", older))
	requireSame(t, older, mustGet(t, s, other, "v"), "a Put under a key never invalidated")

	// A Put requested after it is stored, and a later Put of an older
	// response leaves it as it is.
	newer := requested("newer", after)
	require.NoError(t, s.Put(bg, key, "", newer))
	requireSame(t, newer, mustGet(t, s, key, ""), "a Put requested after the invalidation")
	require.NoError(t, s.Put(bg, key, "", requested("old", before)))
	requireSame(t, newer, mustGet(t, s, key, ""), "a dropped Put replaced the entry")

	// A header update confirming an entry the invalidation removed finds
	// nothing.
	if hu, ok := s.(etagcache.HeaderUpdater); ok {
		const ukey = "https://example.com/inval-update"
		require.NoError(t, s.Put(bg, ukey, "", requested("to update", before)))
		got := mustGet(t, s, ukey, "")
		require.NoError(t, iv.Invalidate(bg, ukey, invalAt))
		require.ErrorIs(t, hu.UpdateHeader(bg, ukey, "", updated(got, "X-New", "1")), etagcache.ErrNotFound)
		requireMissing(t, s, ukey, "")
	}

	// Delete leaves the invalidation in force.
	require.NoError(t, s.Delete(bg, key))
	requireMissing(t, s, key, "")
	require.NoError(t, s.Put(bg, key, "", requested("old", before)))
	requireMissing(t, s, key, "")

	// An invalidation with an earlier time does not move it back; one
	// with a later time moves it on.
	require.NoError(t, iv.Invalidate(bg, key, before.Add(-time.Hour)))
	require.NoError(t, s.Put(bg, key, "", requested("old", before)))
	requireMissing(t, s, key, "")
	require.NoError(t, iv.Invalidate(bg, key, after.Add(time.Hour)))
	requireMissing(t, s, key, "")
	require.NoError(t, s.Put(bg, key, "", requested("newer", after)))
	requireMissing(t, s, key, "")
	latest := requested("latest", after.Add(2*time.Hour))
	require.NoError(t, s.Put(bg, key, "", latest))
	requireSame(t, latest, mustGet(t, s, key, ""))
}

// manyInvalidations is more keys than the stores of this module remember
// invalidations of one by one.
const manyInvalidations = 4200

// testInvalidateMany invalidates more keys than a store may remember one by
// one: the first invalidation must still hold (a store that forgets it
// drops every older Put instead).
func testInvalidateMany(t *testing.T, s etagcache.Store) {
	iv := invalidator(t, s)
	const first = "https://example.com/many/first"
	require.NoError(t, iv.Invalidate(bg, first, invalAt))
	for i := range manyInvalidations {
		require.NoError(t, iv.Invalidate(bg, fmt.Sprint("https://example.com/many/", i), invalAt.Add(time.Duration(i+1)*time.Millisecond)))
	}
	require.NoError(t, s.Put(bg, first, "", requested("old", before)))
	requireMissing(t, s, first, "")
	newest := requested("newest", after.Add(time.Hour))
	require.NoError(t, s.Put(bg, first, "", newest))
	requireSame(t, newest, mustGet(t, s, first, ""), "a Put requested after every invalidation")
}

// testInvalidateConcurrent races Invalidate with Put, Get and UpdateHeader
// on few keys, under a clock of the test's own that moves a minute per
// reading: no Get that begins after an Invalidate returned may find an
// entry requested before that invalidation.
func testInvalidateConcurrent(t *testing.T, s etagcache.Store) {
	iv := invalidator(t, s)
	hu, _ := s.(etagcache.HeaderUpdater)
	keys := []string{"https://example.com/ic0", "https://example.com/ic1"}
	variants := []string{"", "gzip"}
	var ticks atomic.Int64
	now := func() time.Time { return invalAt.Add(time.Duration(ticks.Add(1)) * time.Minute) }
	// done[k] is the latest time of an invalidation of keys[k] that has
	// returned.
	done := make([]atomic.Int64, len(keys))
	const workers, rounds = 8, 250
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
	check := func(k int, variant string, e *etagcache.Entry, since int64) {
		if msg := checkRequested(e, keys[k], variant); msg != "" {
			fail("Get(%q, %q): %s", keys[k], variant, msg)
		} else if e.RequestTime.UnixNano() < since {
			fail("Get(%q, %q) after an invalidation at %v returned: an entry requested at %v",
				keys[k], variant, time.Unix(0, since).UTC(), e.RequestTime.UTC())
		}
	}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range rounds {
				k, variant := rng.IntN(len(keys)), variants[rng.IntN(len(variants))]
				switch op := rng.IntN(10); {
				case op < 4:
					if err := s.Put(bg, keys[k], variant, requestedEntry(keys[k], variant, now(), rng.Uint64())); err != nil {
						fail("Put: %v", err)
					}
				case op < 8:
					since := done[k].Load()
					e, err := s.Get(bg, keys[k], variant)
					if errors.Is(err, etagcache.ErrNotFound) {
						continue
					}
					if err != nil {
						fail("Get: %v", err)
						continue
					}
					check(k, variant, e, since)
					if hu == nil || op == 4 {
						continue
					}
					// Confirm it, as after a 304 to a request sent now.
					u := *e
					u.Header = e.Header.Clone()
					u.RequestTime = now()
					u.Header.Set("X-Requested", strconv.FormatInt(u.RequestTime.UnixNano(), 10))
					if err := hu.UpdateHeader(bg, keys[k], variant, &u); err != nil && !errors.Is(err, etagcache.ErrNotFound) {
						fail("UpdateHeader: %v", err)
					}
				default:
					at := now()
					if err := iv.Invalidate(bg, keys[k], at); err != nil {
						fail("Invalidate: %v", err)
						continue
					}
					for n := at.UnixNano(); ; {
						if old := done[k].Load(); old >= n || done[k].CompareAndSwap(old, n) {
							break
						}
					}
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	for k, key := range keys {
		for _, variant := range variants {
			if e, err := s.Get(bg, key, variant); err == nil {
				check(k, variant, e, done[k].Load())
			}
		}
	}
}

// requestedEntry is an entry of key and variant requested at at, whose
// body carries tok and whose X-Requested field the time, so that a whole
// one can be told from fields of two.
func requestedEntry(key, variant string, at time.Time, tok uint64) *etagcache.Entry {
	ts := strconv.FormatUint(tok, 10)
	return &etagcache.Entry{
		Status:       http.StatusOK,
		Header:       http.Header{"Etag": {sharedTag}, "X-Token": {ts}, "X-Requested": {strconv.FormatInt(at.UnixNano(), 10)}},
		Body:         []byte(key + "|" + variant + "|" + ts),
		RequestTime:  at,
		ResponseTime: at.Add(time.Second),
	}
}

// checkRequested reports how e is not a whole entry of key and variant as
// requestedEntry makes them (a header update may have replaced the time),
// or "".
func checkRequested(e *etagcache.Entry, key, variant string) string {
	ts := e.Header.Get("X-Token")
	if string(e.Body) != key+"|"+variant+"|"+ts {
		return fmt.Sprintf("body %.60q under token %q", e.Body, ts)
	}
	if at := e.Header.Get("X-Requested"); at != strconv.FormatInt(e.RequestTime.UnixNano(), 10) {
		return fmt.Sprintf("requested at %v under X-Requested %s", e.RequestTime, at)
	}
	return ""
}

// RunSharedInvalidation checks, for a store that is an
// etagcache.Invalidator, that an invalidation through one handle wins over
// Puts through another: a and b are two handles onto the same data (two
// processes' stores on one file, two workers' stores on one server). With
// WithFlush, what each Put wrote is made visible through the other handle
// before it is checked; a store whose Put is visible at once needs none.
func RunSharedInvalidation(t *testing.T, a, b etagcache.Store, opts ...Option) {
	cfg := newConfig(opts)
	ia := invalidator(t, a)
	flush := func(s etagcache.Store) {
		t.Helper()
		if cfg.flush != nil {
			require.NoError(t, cfg.flush(s))
		}
	}
	const key = "https://example.com/shared-inval"
	require.NoError(t, b.Put(bg, key, "", requested("old", before)))
	flush(b)
	mustGet(t, a, key, "")

	// A invalidates; B's older answer arrives afterwards, and B's
	// queued or cached state must not keep it either.
	require.NoError(t, ia.Invalidate(bg, key, invalAt))
	requireMissing(t, b, key, "")
	for name, at := range map[string]time.Time{"an hour before": before, "a nanosecond before": invalAt.Add(-1)} {
		require.NoError(t, b.Put(bg, key, "v", requested("old", at)), name)
		requireMissing(t, b, key, "v")
		flush(b)
		requireMissing(t, a, key, "v")
		requireMissing(t, b, key, "v")
	}
	newer := requested("newer", after)
	require.NoError(t, b.Put(bg, key, "v", newer))
	flush(b)
	requireSame(t, newer, mustGet(t, a, key, "v"), "a Put requested after the invalidation, through the other handle")
	requireSame(t, newer, mustGet(t, b, key, "v"))

	// A Put through B before the invalidation, which a store that writes
	// behind may still hold in memory, is not served once it returned.
	const qkey = "https://example.com/shared-inval-queued"
	require.NoError(t, b.Put(bg, qkey, "", requested("queued", before)))
	require.NoError(t, ia.Invalidate(bg, qkey, invalAt))
	requireMissing(t, b, qkey, "")
	flush(b)
	requireMissing(t, a, qkey, "")
	requireMissing(t, b, qkey, "")
}
