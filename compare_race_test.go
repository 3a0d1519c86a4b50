package etagcache_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// TestCompareConcurrentRevalidation: eight goroutines poll a few URLs
// through etagcache (memory store) while the origin keeps changing them.
// Every body must be the one the origin serves under the ETag the caller
// sees. (httpcache is not run here: its memory cache stores header and body
// as one blob, and no torn body could be shown deterministically with
// diskcache either.)
//
// When a 304 changes a header field (here X-Served, like a rate-limit
// counter), the transport persists the merged header. Through
// HeaderUpdater that write could land on a body committed after the entry
// was read (the race TestCompareTornEntryAfterLateCommit shows step by
// step) if stores did not check the validators in the same atomic step.
func TestCompareConcurrentRevalidation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		changingHdr bool
		store       func(t *testing.T) etagcache.Store
	}{
		{"304 moves only Date", false, cmpMemory},
		{"304 changes a header, Put only", true, func(*testing.T) etagcache.Store { return cmpPutOnly{etagcache.NewMemoryStore(0)} }},
		{"304 changes a header, HeaderUpdater", true, cmpMemory},
		{"304 changes a header, bbolt", true, cmpBolt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmpConcurrentRevalidation(t, tc.changingHdr, tc.store(t))
		})
	}
}

func cmpConcurrentRevalidation(t *testing.T, changingHdr bool, store etagcache.Store) {
	const resources, workers, rounds = 3, 8, 200
	var versions [resources]atomic.Int64
	etagOf := func(id int, v int64) string { return fmt.Sprintf(`"%d-%d"`, id, v) }
	bodyOf := func(id int, v int64) string {
		return fmt.Sprintf("resource %d version %d|%s", id, v, strings.Repeat(strconv.Itoa(id), 50+int(v%37)))
	}
	var served atomic.Int64
	var hits [resources]atomic.Int64
	o := newCmpOrigin(t, func(_ *cmpOrigin, w http.ResponseWriter, r *http.Request) {
		var id int
		_, _ = fmt.Sscanf(r.URL.Path, "/r/%d", &id)
		// Every fifth request to a resource changes it: changes and 304s
		// both happen, however fast or slow the machine is, while other
		// workers' requests for it are in flight.
		if hits[id].Add(1)%5 == 0 {
			versions[id].Add(1)
		}
		v := versions[id].Load()
		if changingHdr {
			w.Header().Set("X-Served", strconv.FormatInt(served.Add(1), 10))
		}
		cmpServe(w, r, etagOf(id, v), bodyOf(id, v))
	})
	base := &http.Transport{MaxIdleConnsPerHost: workers}
	defer base.CloseIdleConnections()
	tr := etagcache.NewTransport(store, etagcache.WithBase(base))
	c := tr.Client()

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				id := (w + i) % resources
				resp, err := c.Get(fmt.Sprintf("%s/r/%d", o.URL, id))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil {
					errs <- err
					return
				}
				etag := resp.Header.Get("Etag")
				var rid int
				var v int64
				if _, err := fmt.Sscanf(etag, `"%d-%d"`, &rid, &v); err != nil || rid != id || string(b) != bodyOf(rid, v) {
					errs <- fmt.Errorf("worker %d, resource %d: ETag %s with body %.40q… (Cache-Status %q)", w, id, etag, b, resp.Header.Get("Cache-Status"))
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := tr.Stats()
	assert.Positive(t, st.Revalidated, "no 304 was exercised")
	assert.Positive(t, st.Changed, "no change was exercised")
	assert.Zero(t, st.StoreErrors)
}

func cmpMemory(*testing.T) etagcache.Store { return etagcache.NewMemoryStore(0) }

func cmpBolt(t *testing.T) etagcache.Store {
	s, err := etagcache.OpenBoltStore(filepath.Join(t.TempDir(), "cache.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// cmpPutOnly hides a store's HeaderUpdater, so the transport persists a
// revalidated header with a full Put.
type cmpPutOnly struct{ etagcache.Store }

// TestCompareTornEntryAfterLateCommit reproduces, deterministically, a race
// between a slow miss and a revalidation:
//
//  1. A GETs version 1 (a miss) and does not read the body yet.
//  2. The resource changes; B GETs version 2 and reads it: stored.
//  3. C revalidates the stored version 2; the origin holds its 304.
//  4. A reads to EOF: version 1 is committed over version 2.
//  5. The origin answers C's 304 (ETag "v2", a changed X-Served), which
//     the transport persists.
//  6. D revalidates what is stored now.
//
// D must get version 2's body under ETag "v2". A HeaderUpdater that wrote
// version 2's header over version 1's body in step 5 would serve version 1's
// body under the current ETag for as long as the resource does not change;
// the stores refuse an update whose validators no longer match.
func TestCompareTornEntryAfterLateCommit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) etagcache.Store
	}{
		{"HeaderUpdater", cmpMemory},
		{"bbolt", cmpBolt},
		{"PutOnly", func(*testing.T) etagcache.Store { return cmpPutOnly{etagcache.NewMemoryStore(0)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrived, release := make(chan struct{}), make(chan struct{})
			var served atomic.Int64
			o := newCmpOrigin(t, func(o *cmpOrigin, w http.ResponseWriter, r *http.Request) {
				v := o.version.Load()
				w.Header().Set("X-Served", strconv.FormatInt(served.Add(1), 10))
				if r.Header.Get("X-Hold") != "" {
					close(arrived)
					<-release
				}
				cmpServe(w, r, fmt.Sprintf(`"v%d"`, v), fmt.Sprintf("body of version %d", v))
			})
			doRelease := sync.OnceFunc(func() { close(release) })
			t.Cleanup(doRelease) // before the origin closes, should a step fail
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			c := etagcache.NewTransport(tc.store(t), etagcache.WithBase(base)).Client()
			get := func(kv ...string) (*http.Response, string, error) {
				resp, err := c.Do(cmpRequest(o.URL, kv...))
				if err != nil {
					return nil, "", err
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				return resp, string(b), err
			}

			respA, err := c.Get(o.URL) // 1
			require.NoError(t, err)
			o.version.Store(2)
			_, bodyB, err := get() // 2
			require.NoError(t, err)
			require.Equal(t, "body of version 2", bodyB)

			type result struct {
				resp *http.Response
				body string
				err  error
			}
			resC := make(chan result, 1)
			go func() { // 3
				resp, body, err := get("X-Hold", "1")
				resC <- result{resp, body, err}
			}()
			select {
			case <-arrived:
			case rc := <-resC:
				t.Fatalf("C was answered without reaching the origin: %v", rc.err)
			}
			bodyA, err := io.ReadAll(respA.Body) // 4
			require.NoError(t, err)
			require.NoError(t, respA.Body.Close())
			require.Equal(t, "body of version 1", string(bodyA))
			doRelease() // 5
			rc := <-resC
			require.NoError(t, rc.err)
			assert.Equal(t, "body of version 2", rc.body)
			assert.Equal(t, `"v2"`, rc.resp.Header.Get("Etag"))

			respD, bodyD, err := get() // 6
			require.NoError(t, err)
			assert.Equal(t, `"v2"`, respD.Header.Get("Etag"))
			assert.Equal(t, "body of version 2", bodyD, "a stale body was served under the current ETag (Cache-Status %q)", respD.Header.Get("Cache-Status"))
		})
	}
}
