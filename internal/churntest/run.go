// Package churntest is a randomized churn test of etagcache over a shared
// store, used by the store tests of the root package and of redisstore.
//
// Several Transports (standing for processes) share one store, each used by
// several goroutines, with coalescing on. They GET a few resources of an
// origin whose representations share validators: the ETag is the version
// only, the same for every tenant under Vary: X-Tenant and for gzip and
// identity under Vary: Accept-Encoding (and under nginx's missing Vary and
// lighttpd's Vary on gzip answers only), so any mix-up between variants
// shows as a wrong body rather than as a miss. Every body names its path,
// version, tenant and coding. Versions change on POSTs made through the
// transports and on every changeEvery-th GET at the origin.
//
// Every response is checked against the origin's truth: status 200; the
// body decodes to a variant the origin really served, of the requested
// path and tenant, in a coding the caller accepts, under the ETag of its
// version, with consistent Content-Encoding and Content-Length; no
// Set-Cookie sent to another request; and a version no older than the one
// current when the request began (see checkVersion for the two exceptions
// that HTTP allows).
package churntest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// Config sizes a run. Its size is a count of requests, not a duration, so
// that every run covers the same ground; Timeout only bounds it.
type Config struct {
	// Fresh runs the transports WithFreshness(true) (coalescing is then on
	// by default); otherwise in the default mode WithCoalescing(true).
	Fresh bool
	// Workers is the number of Transports, Goroutines the number of
	// goroutines sharing each. Defaults 3 and 4.
	Workers, Goroutines int
	// Requests is the number of GETs in all (rounded up to a multiple of
	// Workers×Goroutines). Default 15,000; ETAGCACHE_CHURN_REQUESTS
	// overrides it.
	Requests int
	// PostEvery makes each goroutine POST to a random resource after every
	// PostEvery-th GET. Default 50.
	PostEvery int
	// Seed seeds every goroutine's choices; ETAGCACHE_CHURN_SEED overrides
	// it.
	Seed uint64
	// Timeout bounds the run. Default 3 minutes.
	Timeout time.Duration
}

func (c *Config) defaults(t testing.TB) {
	if c.Workers == 0 {
		c.Workers = 3
	}
	if c.Goroutines == 0 {
		c.Goroutines = 4
	}
	if c.Requests == 0 {
		c.Requests = 15000
	}
	if c.PostEvery == 0 {
		c.PostEvery = 50
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * time.Minute
	}
	for _, env := range []struct {
		name string
		set  func(int)
	}{
		{"ETAGCACHE_CHURN_REQUESTS", func(n int) { c.Requests = n }},
		{"ETAGCACHE_CHURN_SEED", func(n int) { c.Seed = uint64(n) }},
	} {
		if s := os.Getenv(env.name); s != "" {
			n, err := strconv.Atoi(s)
			require.NoError(t, err, env.name)
			env.set(n)
		}
	}
}

type reqIDKey struct{}

// idBase adds the request's id, from its context, to what is really sent.
// Below the cache, so that it is unique per request on the wire (the
// origin echoes it in Set-Cookie) without making every request a distinct
// one to the cache: with nothing stored, coalescing keys on every header
// field.
type idBase struct{ rt http.RoundTripper }

func (b idBase) RoundTrip(r *http.Request) (*http.Response, error) {
	id, _ := r.Context().Value(reqIDKey{}).(string)
	if id == "" {
		return b.rt.RoundTrip(r)
	}
	r2 := *r
	r2.Header = r.Header.Clone()
	r2.Header.Set(HeaderReqID, id)
	return b.rt.RoundTrip(&r2)
}

var (
	tenants   = []string{"a", "b", "c", ""}
	encodings = []string{"", "gzip", "identity"}
)

// Run runs the churn with worker i's Transport on store(i), and fails t if
// any response was wrong, logging the first one of each kind in full.
func Run(t testing.TB, cfg Config, store func(worker int) etagcache.Store) {
	cfg.defaults(t)
	o := NewOrigin()
	defer o.Close()

	var transports []*etagcache.Transport
	var clients []*http.Client
	for w := range cfg.Workers {
		base := &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Goroutines, IdleConnTimeout: time.Minute}
		defer base.CloseIdleConnections()
		opts := []etagcache.Option{etagcache.WithBase(idBase{base}), etagcache.WithLogger(slog.New(slog.DiscardHandler))}
		if cfg.Fresh {
			opts = append(opts, etagcache.WithFreshness(true))
		} else {
			opts = append(opts, etagcache.WithCoalescing(true))
		}
		tr := etagcache.NewTransport(store(w), opts...)
		transports = append(transports, tr)
		clients = append(clients, tr.Client())
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	per := (cfg.Requests + cfg.Workers*cfg.Goroutines - 1) / (cfg.Workers * cfg.Goroutines)
	tl := &tally{kinds: map[string]int{}, firstOf: map[string]string{}, byPath: map[string]map[string]int{}, collapsedOf: map[string]int{}}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		for g := range cfg.Goroutines {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w<<16|g)))
			wg.Go(func() {
				for i := range per {
					if ctx.Err() != nil {
						return
					}
					id := fmt.Sprintf("w%d.g%d.%d", w, g, i)
					if i%cfg.PostEvery == cfg.PostEvery-1 {
						post(ctx, o, clients[w], rng.IntN(len(resources)), id+".post", tl)
					}
					get(ctx, o, cfg.Fresh, clients[w], w, rng, id, tl)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	var st etagcache.Stats
	for _, tr := range transports {
		s := tr.Stats()
		st.Revalidated += s.Revalidated
		st.Stored += s.Stored
		st.Hits += s.Hits
		st.Coalesced += s.Coalesced
		st.StoreErrors += s.StoreErrors
	}
	g200, g304, posts, versions := o.counts()
	mode := "default mode, coalescing"
	if cfg.Fresh {
		mode = "freshness mode"
	}
	t.Logf("%s, %d transports × %d goroutines, seed %d: %d GETs and %d POSTs in %v", mode, cfg.Workers, cfg.Goroutines,
		cfg.Seed, tl.gets, posts, elapsed.Round(time.Millisecond))
	t.Logf("origin: %d×200, %d×304, versions now %v; transports: %d revalidated, %d stored, %d hits, %d coalesced, %d store errors",
		g200, g304, versions, st.Revalidated, st.Stored, st.Hits, st.Coalesced, st.StoreErrors)
	t.Logf("responses: %d gzip bytes, %d collapsed (%d onto an answer from before the request began), %d stale within their lifetime",
		tl.gzipped, tl.collapsed, tl.window, tl.staleOK)

	require.NoError(t, ctx.Err(), "the run did not finish in %v: %d of %d GETs done", cfg.Timeout, tl.gets, per*cfg.Workers*cfg.Goroutines)
	if tl.wrong > 0 || tl.kinds[kindPost] > 0 {
		for _, line := range tl.breakdown() {
			t.Logf("wrong: %s", line)
		}
		for _, k := range kindOrder {
			if ex := tl.firstOf[k]; ex != "" && ex != tl.first {
				t.Logf("first %s:\n%s", k, ex)
			}
		}
	}
	assert.Zero(t, tl.wrong, "%d of %d responses wrong (%s); the first:\n%s", tl.wrong, tl.gets, tl.summary(), tl.first)
	assert.Zero(t, tl.kinds[kindPost], "POSTs failed; the first: %s", tl.firstOf[kindPost])
	// That the run exercised what it is about.
	assert.Positive(t, g304, "no revalidation")
	assert.Positive(t, tl.gzipped, "no gzip response")
	assert.Equal(t, (per/cfg.PostEvery)*cfg.Workers*cfg.Goroutines, posts, "POSTs that reached the origin")
	if cfg.Fresh {
		assert.Positive(t, st.Hits, "no fresh hit")
	}
}

func get(ctx context.Context, o *Origin, fresh bool, c *http.Client, w int, rng *rand.Rand, id string, tl *tally) {
	rq := &request{id: id, worker: w, res: rng.IntN(len(resources)),
		tenant: tenants[rng.IntN(len(tenants))], accept: encodings[rng.IntN(len(encodings))]}
	req, err := http.NewRequestWithContext(context.WithValue(ctx, reqIDKey{}, id), http.MethodGet, o.URL+resources[rq.res].path, nil)
	if err != nil {
		panic(err)
	}
	if rq.tenant != "" {
		req.Header.Set("X-Tenant", rq.tenant)
	}
	if rq.accept != "" {
		req.Header.Set("Accept-Encoding", rq.accept)
	}
	rq.header = req.Header.Clone()
	rq.snap = o.begin(rq.res)
	resp, err := c.Do(req)
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	if ctx.Err() != nil {
		return // the run timed out: Run says so
	}
	tl.add(rq, resp, raw, o.check(fresh, rq, resp, raw, err))
}

func post(ctx context.Context, o *Origin, c *http.Client, ri int, id string, tl *tally) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, reqIDKey{}, id), http.MethodPost, o.URL+resources[ri].path, nil)
	if err != nil {
		panic(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			tl.postFailed(fmt.Sprintf("POST %s (id %s): %v", resources[ri].path, id, err))
		}
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	v, verr := strconv.Atoi(resp.Header.Get(headerVersion))
	if err != nil || verr != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent) {
		tl.postFailed(fmt.Sprintf("POST %s (id %s): status %d, %v, %s: %q", resources[ri].path, id, resp.StatusCode, err, headerVersion, resp.Header.Get(headerVersion)))
		return
	}
	o.posted(ri, v)
}
