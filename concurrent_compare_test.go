package etagcache_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gregjones/httpcache"
	"github.com/gregjones/httpcache/diskcache"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
)

// tornOrigin serves one document that flips between two versions of the
// same length every few requests (A, B, A, B, ...), so that an entry read
// while it is being rewritten can mix the two, and a torn entry still
// carrying A's ETag is confirmed by a 304 once the origin is back at A.
type tornOrigin struct {
	*httptest.Server
	bodies   [2][]byte
	etags    [2]string
	requests atomic.Int64
	notMod   atomic.Int64
}

const (
	tornBodySize  = 64 << 10
	tornFlipEvery = 5 // requests between version flips
)

func newTornOrigin(t *testing.T, changingHeader bool) *tornOrigin {
	o := &tornOrigin{}
	for v := range o.bodies {
		o.bodies[v] = make([]byte, tornBodySize)
		rand.NewChaCha8([32]byte{byte(v + 1)}).Read(o.bodies[v])
		o.etags[v] = fmt.Sprintf(`"version-%c"`, 'A'+v)
	}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := o.requests.Add(1)
		v := int(n/tornFlipEvery) % 2
		h := w.Header()
		h.Set("Etag", o.etags[v])
		h.Set("Cache-Control", "no-cache")
		if changingHeader {
			// Like a rate-limit counter: every 304 brings a header the
			// cache should keep, so it writes the entry again.
			h.Set("X-Served", strconv.FormatInt(n, 10))
		}
		if r.Header.Get("If-None-Match") == o.etags[v] {
			o.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(o.bodies[v])))
		_, _ = w.Write(o.bodies[v])
	}))
	t.Cleanup(o.Close)
	return o
}

// tornTally counts what the callers got.
type tornTally struct {
	ok, torn, failed atomic.Int64
	mu               sync.Mutex
	example          string
}

func (tt *tornTally) note(what string, p *atomic.Int64) {
	p.Add(1)
	tt.mu.Lock()
	if tt.example == "" {
		tt.example = what
	}
	tt.mu.Unlock()
}

// TestConcurrentRevalidationNeverTorn polls one URL from 8 goroutines
// through one transport while the origin flips between two versions, and
// checks every body the callers get against the ETag it came with.
//
// etagcache, with the memory store and with the bbolt store, must never
// serve a body that is not the one its ETag names, nor fail a request.
//
// httpcache with diskcache does not hold: diskv's Read releases its lock
// before it reads the file, and its Write truncates and rewrites the file in
// place (diskcache sets no TempDir), so a read that overlaps a write gets
// the beginning of one version and the rest of another, or a truncated file;
// diskv's read cache then keeps what was read, and httpcache serves it as
// long as 304s confirm the ETag in its header part. Every run here has shown
// dozens of truncated bodies (the caller's read fails with unexpected EOF)
// and mostly some torn ones (a full-length body mixing both versions, or
// the other version's); the test requires at least one of either, trying up
// to three times. etagcache over httpcachestore(diskcache) reads the same
// files, but its records end in a CRC-32C: a torn read is a miss, and it
// must never serve a torn body.
//
// With a header that changes on every answer (changing-header), every
// revalidation is also written back to the store through HeaderUpdater,
// which keeps the body the store holds by then. Unless the store checks, in
// the same atomic step, that the stored entry still has the validators the
// 304 confirmed (Entry.SameValidators), a revalidation of version A that
// overlaps a fetch and store of version B files A's header over B's body,
// and once the origin is back at A its 304 confirms the mix: without that
// check this mode tore 70 to 165 bodies out of 960 in every run, with both
// stores (the race TestCompareTornEntryAfterLateCommit shows step by step).
func TestConcurrentRevalidationNeverTorn(t *testing.T) {
	type impl struct {
		name string
		// mustHold: a torn body or a failed request fails the test.
		// Otherwise, with mustTear, seeing none fails it.
		mustHold, mustTear bool
		client             func(t *testing.T, base http.RoundTripper) (*http.Client, func() etagcache.Stats)
	}
	etag := func(store func(t *testing.T) etagcache.Store) func(t *testing.T, base http.RoundTripper) (*http.Client, func() etagcache.Stats) {
		return func(t *testing.T, base http.RoundTripper) (*http.Client, func() etagcache.Stats) {
			tr := etagcache.NewTransport(store(t), etagcache.WithBase(base))
			return tr.Client(), tr.Stats
		}
	}
	impls := []impl{
		{"etagcache-mem", true, false, etag(func(*testing.T) etagcache.Store { return etagcache.NewMemoryStore(0) })},
		{"etagcache-bbolt", true, false, etag(func(t *testing.T) etagcache.Store {
			s, err := etagcache.OpenBoltStore(filepath.Join(t.TempDir(), "cache.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})},
		{"httpcache-disk", false, true, func(t *testing.T, base http.RoundTripper) (*http.Client, func() etagcache.Stats) {
			tr := httpcache.NewTransport(diskcache.New(t.TempDir()))
			tr.Transport = base
			return tr.Client(), nil
		}},
		{"etagcache-httpcache-adapter-disk", true, false, etag(func(t *testing.T) etagcache.Store {
			return httpcachestore.New(diskcache.New(t.TempDir()))
		})},
	}
	for _, mode := range []string{"validators-only", "changing-header"} {
		t.Run(mode, func(t *testing.T) {
			for _, im := range impls {
				t.Run(im.name, func(t *testing.T) {
					attempts := 1
					if im.mustTear {
						attempts = 3
					}
					var tt *tornTally
					for range attempts {
						tt = tornRun(t, mode == "changing-header", im.client)
						if tt.torn.Load()+tt.failed.Load() > 0 {
							break
						}
					}
					bad := tt.torn.Load() + tt.failed.Load()
					switch {
					case im.mustHold:
						if bad > 0 {
							t.Errorf("%s served %d torn bodies and failed %d requests", im.name, tt.torn.Load(), tt.failed.Load())
						}
					case im.mustTear:
						if bad == 0 {
							t.Errorf("%s served no torn or truncated body in %d attempts", im.name, attempts)
						}
					}
				})
			}
		})
	}
}

// tornRun polls a new origin from 8 goroutines through a new client and
// tallies what they got.
func tornRun(t *testing.T, changingHeader bool, client func(*testing.T, http.RoundTripper) (*http.Client, func() etagcache.Stats)) *tornTally {
	const workers, perWorker = 8, 120
	o := newTornOrigin(t, changingHeader)
	base := &http.Transport{MaxIdleConnsPerHost: workers}
	defer base.CloseIdleConnections()
	c, stats := client(t, base)
	var tt tornTally
	deadline := time.Now().Add(1500 * time.Millisecond) // for -race; about 0.3s without
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				tornGet(c, o, &tt, w, i)
			}
		})
	}
	wg.Wait()
	t.Logf("%d requests: %d correct, %d torn (body not the one its ETag names), %d failed; origin: %d×304",
		tt.ok.Load()+tt.torn.Load()+tt.failed.Load(), tt.ok.Load(), tt.torn.Load(), tt.failed.Load(), o.notMod.Load())
	if tt.example != "" {
		t.Logf("first: %s", tt.example)
	}
	if stats != nil {
		st := stats()
		t.Logf("%+v", st)
		if st.Revalidated == 0 || st.Changed == 0 {
			t.Errorf("the test exercised no revalidation or no change (Revalidated %d, Changed %d)", st.Revalidated, st.Changed)
		}
	}
	return &tt
}

// tornGet does one GET and checks the body against its ETag.
func tornGet(c *http.Client, o *tornOrigin, tt *tornTally, w, i int) {
	resp, err := c.Get(o.URL)
	if err != nil {
		tt.note(fmt.Sprintf("worker %d, request %d: %v", w, i, err), &tt.failed)
		return
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	etag := resp.Header.Get("Etag")
	switch {
	case err != nil:
		tt.note(fmt.Sprintf("worker %d, request %d: reading body: %v", w, i, err), &tt.failed)
	case resp.StatusCode != http.StatusOK:
		tt.note(fmt.Sprintf("worker %d, request %d: status %d", w, i, resp.StatusCode), &tt.failed)
	case etag == o.etags[0] && bytes.Equal(body, o.bodies[0]), etag == o.etags[1] && bytes.Equal(body, o.bodies[1]):
		tt.ok.Add(1)
	default:
		tt.note(fmt.Sprintf("worker %d, request %d: ETag %s with a %d-byte body that is %s (X-From-Cache %q)",
			w, i, etag, len(body), tornDescribe(o, body), resp.Header.Get("X-From-Cache")), &tt.torn)
	}
}

// tornDescribe says how a body relates to the two versions.
func tornDescribe(o *tornOrigin, body []byte) string {
	for v := range o.bodies {
		if bytes.Equal(body, o.bodies[v]) {
			return "version " + string(rune('A'+v))
		}
	}
	if len(body) != tornBodySize {
		return "neither version"
	}
	// Where does it stop matching each version?
	var match [2]int
	for v := range o.bodies {
		for match[v] < len(body) && body[match[v]] == o.bodies[v][match[v]] {
			match[v]++
		}
	}
	return fmt.Sprintf("neither version (same as A for %d bytes, as B for %d from the start)", match[0], match[1])
}
