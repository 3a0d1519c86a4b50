package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hammer runs goroutines that poll paths through each worker until stopped,
// checking that every request succeeds and every body is one the origin
// served for its path. The returned function stops them and reports.
func hammer(t *testing.T, o *origin, workers []*worker, paths []string, perWorker int) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	requests := 0
	for wi, w := range workers {
		for g := range perWorker {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					path := paths[(g+i)%len(paths)]
					got, err := w.get(context.Background(), o.URL+path)
					mu.Lock()
					requests++
					switch {
					case err != nil:
						failures = append(failures, fmt.Sprintf("worker %d %s: %v", wi, path, err))
					case got.Status != 200:
						failures = append(failures, fmt.Sprintf("worker %d %s: status %d", wi, path, got.Status))
					case !o.Served(path, got.Body):
						failures = append(failures, fmt.Sprintf("worker %d %s: body never served (%d bytes)", wi, path, len(got.Body)))
					}
					mu.Unlock()
				}
			}()
		}
	}
	return func() {
		close(done)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, failures)
		assert.Positive(t, requests)
	}
}

// phase has each worker GET every path once, in the test's goroutine, and
// checks that each request succeeds with a body the origin served.
func phase(t *testing.T, o *origin, workers []*worker, paths []string) {
	t.Helper()
	for _, w := range workers {
		for _, p := range paths {
			g := w.mustGet(t, o.URL+p)
			require.True(t, o.Served(p, g.Body), "%s: body never served", p)
		}
	}
}

func storeErrors(ws []*worker) (n int64) {
	for _, w := range ws {
		n += w.t.Stats().StoreErrors
	}
	return n
}

// resumes checks that caching works: A fetches a new resource and stores
// it, and B's first request for it is conditional and answered 304.
func resumes(t *testing.T, o *origin, a, b *worker, path string) {
	t.Helper()
	if why := tryResume(t, o, a, b, path); why != "" {
		t.Error(why)
	}
}

// resumesAfterOutage is resumes for the first requests after Redis came
// back: a pooled connection that predates the outage may fail one store
// call before go-redis drops it (the transport then fails open), so caching
// has resumed when one of a few fresh resources shows it.
func resumesAfterOutage(t *testing.T, o *origin, a, b *worker, path string) {
	t.Helper()
	var whys []string
	for i := range 5 {
		why := tryResume(t, o, a, b, fmt.Sprintf("%s-%d", path, i))
		if why == "" {
			return
		}
		whys = append(whys, why)
	}
	t.Errorf("caching did not resume after the outage: %v", whys)
}

// tryResume has A fetch a new resource and B fetch it next, and says what
// went wrong when A did not store it or B's first request was not an
// answered revalidation ("" when caching works). Bodies are always checked.
func tryResume(t *testing.T, o *origin, a, b *worker, path string) string {
	t.Helper()
	body := bytes.Repeat([]byte(path), 300)
	o.Set(path, body)
	require.Equal(t, body, a.mustGet(t, o.URL+path).Body)
	e, err := a.store.Get(context.Background(), o.URL+path, "")
	if err != nil {
		return fmt.Sprintf("%s: A did not store the new resource: %v", path, err)
	}
	require.Equal(t, body, e.Body)
	require.Equal(t, body, b.mustGet(t, o.URL+path).Body)
	var last originReq
	for _, r := range o.Log() {
		if r.Path == path {
			last = r
		}
	}
	if last.IfNoneMatch != etagOf(body) || last.Status != 304 {
		return fmt.Sprintf("%s: B's first request was not an answered revalidation (If-None-Match %q, status %d)", path, last.IfNoneMatch, last.Status)
	}
	return ""
}

// waitReachable waits until c reaches Redis again, every master of a
// Cluster. After a run of failed dials go-redis stops dialing on demand and
// retries in the background (about once a second), so caching resumes
// within that much of Redis' return, not at once; this polls for it.
func waitReachable(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	ping := func() error { return c.Ping(ctx).Err() }
	if cc, ok := c.(*redis.ClusterClient); ok {
		ping = func() error {
			return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() })
		}
	}
	for ping() != nil {
		select {
		case <-ctx.Done():
			t.Fatal("Redis not reachable again after 15s")
		case <-tick.C:
		}
	}
}

func changingOrigin(t *testing.T, n int) (*origin, []string) {
	o := newOrigin(t)
	o.changeEvery = 7
	var paths []string
	for i := range n {
		p := fmt.Sprintf("/r%d", i)
		o.Set(p, bytes.Repeat([]byte(p), 1000+i))
		paths = append(paths, p)
	}
	return o, paths
}

// TestSingleNodeStoppedKilledRestarted: with requests running throughout,
// Redis is frozen (SIGSTOP, a Redis that does not answer), then killed
// (SIGKILL), then started again on the same port. Every request succeeds
// with a body the origin served, and caching resumes once Redis is back,
// without a new client or store.
func TestSingleNodeStoppedKilledRestarted(t *testing.T) {
	requireRedis(t)
	port, err := freePort()
	require.NoError(t, err)
	srv, err := startRedis(t.TempDir(), port)
	require.NoError(t, err)
	t.Cleanup(srv.Kill)
	c := newSingleClient(t, srv.Addr, faultTimeout)
	o, paths := changingOrigin(t, 8)
	a, b := newWorker(t, c), newWorker(t, c)
	ws := []*worker{a, b}

	stop := hammer(t, o, ws, paths, 4)
	phase(t, o, ws, paths)
	resumes(t, o, a, b, "/before")

	require.NoError(t, srv.Signal(stopSignal))
	phase(t, o, ws, paths[:1])
	require.NoError(t, srv.Signal(contSignal))
	frozen := storeErrors(ws)
	assert.Positive(t, frozen, "a frozen Redis fails store calls (and only them)")

	srv.Kill()
	phase(t, o, ws, paths)
	assert.Greater(t, storeErrors(ws), frozen, "a dead Redis fails store calls (and only them)")

	require.NoError(t, srv.Restart())
	waitReachable(t, c)
	phase(t, o, ws, paths)
	resumesAfterOutage(t, o, a, b, "/after")
	stop()
}

// TestClusterMasterKilled: one of the three masters of a Cluster (no
// replicas) is killed with requests running: requests keep succeeding (the
// store's errors are the transport's to log). When the master comes back
// with its node file, caching resumes.
func TestClusterMasterKilled(t *testing.T) {
	requireRedis(t)
	cl, err := startCluster(t.TempDir())
	require.NoError(t, err)
	t.Cleanup(cl.Kill)
	c := newClusterClient(t, cl.Addrs(), faultTimeout)
	o, paths := changingOrigin(t, 16)
	a, b := newWorker(t, c), newWorker(t, c)
	ws := []*worker{a, b}

	stop := hammer(t, o, ws, paths, 4)
	phase(t, o, ws, paths)
	resumes(t, o, a, b, "/before")

	t0 := time.Now()
	cl.Nodes[1].Kill()
	phase(t, o, ws, paths)
	t.Logf("phase 1 dead %v", time.Since(t0))
	phase(t, o, ws, paths)
	t.Logf("phase 2 dead %v", time.Since(t0))
	assert.Positive(t, storeErrors(ws), "16 resources: some live on the dead master")

	require.NoError(t, cl.Nodes[1].Restart())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, cl.WaitOK(ctx))
	waitReachable(t, c)
	t.Logf("ok again %v", time.Since(t0))
	phase(t, o, ws, paths)
	t.Logf("phase 3 %v", time.Since(t0))
	for i := range 4 { // resources on several slots
		resumesAfterOutage(t, o, a, b, fmt.Sprintf("/after%d", i))
	}
	stop()
}

// TestConcurrentWorkers: 32 goroutines on each of two workers poll
// resources that change underneath (every fifth request of a resource
// changes it). Every body a caller gets is a version the origin served for
// that URL, and the store is used: revalidations happen on both workers.
func TestConcurrentWorkers(t *testing.T) {
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			c := top.client(t)
			p := testPrefix(t)
			o, paths := changingOrigin(t, 6)
			// With a TTL, so reads go through the read script.
			a, b := newWorker(t, c, WithPrefix(p), WithTTL(time.Hour)), newWorker(t, c, WithPrefix(p), WithTTL(time.Hour))
			var wg sync.WaitGroup
			var mu sync.Mutex
			var failures []string
			for _, w := range []*worker{a, b} {
				for g := range 32 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range 20 {
							path := paths[(g+i)%len(paths)]
							got, err := w.get(context.Background(), o.URL+path)
							if err == nil && got.Status == 200 && o.Served(path, got.Body) {
								continue
							}
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%s: err %v, status %d, %d bytes", path, err, got.Status, len(got.Body)))
							mu.Unlock()
						}
					}()
				}
			}
			wg.Wait()
			assert.Empty(t, failures)
			for i, w := range []*worker{a, b} {
				st := w.t.Stats()
				assert.Zero(t, st.StoreErrors, "worker %d", i)
				assert.Positive(t, st.Revalidated, "worker %d revalidated", i)
				t.Logf("worker %d: %+v", i, st)
			}
		})
	}
}
