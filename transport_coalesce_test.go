package etagcache

// Coalescing and concurrency in the freshness transport, under
// -race, each ending with the goroutine count back where it was.

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestCoalescingColdURL(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, strings.Repeat("cold ", 2000))
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })

	const n = 64
	var wg sync.WaitGroup
	bodies := make([]string, n)
	resps := make([]*http.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.Client().Get(o.URL)
			if !assert.NoError(t, err) {
				return
			}
			resp.Header.Set("X-Mine", strconv.Itoa(i)) // each caller owns its map
			b, err := io.ReadAll(resp.Body)
			assert.NoError(t, err)
			resp.Body.Close()
			bodies[i], resps[i] = string(b), resp
		}()
	}
	waitFor(t, "64 callers on one exchange", func() bool { return tr.fx.flights.waitingAll() == n })
	close(hold)
	wg.Wait()
	assert.Equal(t, int64(1), o.gets.Load(), "64 goroutines on a cold URL: one origin GET")
	collapsed := 0
	for i := range n {
		assert.Equal(t, strings.Repeat("cold ", 2000), bodies[i])
		assert.Equal(t, strconv.Itoa(i), resps[i].Header.Get("X-Mine"))
		if strings.HasSuffix(resps[i].Header.Get("Cache-Status"), "; collapsed") {
			collapsed++
		}
	}
	assert.Equal(t, n-1, collapsed)
	assert.Equal(t, int64(n-1), tr.Stats().Coalesced)
	resp, _ := getBody(t, tr, o.URL)
	assert.Equal(t, ResultHit, ResultOf(resp), "the shared response was stored once")
	goroutinesBack(t, base, tr)
}

func TestCoalescingRevalidations(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "", `"v1"`, "doc")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithCoalescing(true)) // default mode
	getBody(t, tr, o.URL)
	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })
	const n = 64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tr.Client().Get(o.URL)
			if !assert.NoError(t, err) {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, "doc", string(b))
			assert.Equal(t, ResultRevalidated, ResultOf(resp))
		}()
	}
	waitFor(t, "64 callers on one revalidation", func() bool { return tr.fx.flights.waitingAll() == n })
	close(hold)
	wg.Wait()
	assert.Equal(t, int64(1), o.conds.Load(), "64 revalidating goroutines: one conditional GET")
	goroutinesBack(t, base, tr)
}

func TestCoalescingNeverAcrossPartitionsBodiesOrConditionals(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "", `"v1"`, "doc")
	tr := newFreshTransport(t, clk, WithCoalescing(true))
	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })
	var wg sync.WaitGroup
	for _, kv := range [][]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}, {"If-None-Match", `"x"`}, {"Cookie", "s=1"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, o.URL, nil)
			req.Header.Set(kv[0], kv[1])
			resp, err := tr.RoundTrip(req)
			if assert.NoError(t, err) {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "four requests at the origin", func() bool { return o.inside.Load() == 4 })
	close(hold)
	wg.Wait()
}

// The caller whose request is at the origin leaves before the header: its
// request is cancelled and it returns at once; the caller that stayed
// sends the request again and gets its answer.
func TestCoalescedLeaderLeaves(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=60", `"v1"`, "doc")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
		_, err := tr.RoundTrip(req)
		errc <- err
	}()
	waitFor(t, "first caller", func() bool { return tr.fx.flights.waitingAll() == 1 && o.inside.Load() == 1 })
	bodyc := make(chan string, 1)
	go func() {
		_, b := getBody(t, tr, o.URL)
		bodyc <- b
	}()
	waitFor(t, "second caller", func() bool { return tr.fx.flights.waitingAll() == 2 })
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	waitFor(t, "the second caller's own request", func() bool { return o.gets.Load() == 2 })
	close(hold)
	assert.Equal(t, "doc", <-bodyc, "the caller that stayed got its answer")
	goroutinesBack(t, base, tr)
}

// Freshness runs out while requests are in flight: every answer is whole
// and right, hits come only before the expiry, and the revalidations it
// causes coalesce.
func TestFreshnessExpiresWhileRequestsAreInFlight(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=10", `"v1"`, strings.Repeat("x", 4096))
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)

	var stop atomic.Bool
	var hits, revalidated atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				resp, err := tr.Client().Get(o.URL)
				if !assert.NoError(t, err) {
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				assert.NoError(t, err)
				assert.Len(t, b, 4096)
				switch ResultOf(resp) {
				case ResultHit:
					hits.Add(1)
				case ResultRevalidated:
					revalidated.Add(1)
				}
			}
		}()
	}
	waitFor(t, "hits", func() bool { return hits.Load() > 50 })
	assert.Zero(t, o.conds.Load(), "no revalidation while fresh")
	// Expire it for good: every request revalidates from now on (each 304
	// makes it fresh for 10 s, and the clock moves a minute at a time).
	for i := 0; i < 20; i++ {
		clk.Advance(time.Minute)
		before := o.conds.Load()
		waitFor(t, "a revalidation", func() bool { return o.conds.Load() > before })
	}
	stop.Store(true)
	wg.Wait()
	assert.Greater(t, revalidated.Load(), int64(0))
	assert.Equal(t, int64(1), o.gets.Load(), "never refetched in full")
	goroutinesBack(t, base, tr)
}

// A background revalidation races with foreground revalidations of the
// same entry: they share the one conditional request.
func TestBackgroundRevalidationRacesWithForeground(t *testing.T) {
	clk := newFakeClock()
	o := newFreshOrigin(t, clk, "max-age=1, stale-while-revalidate=5", `"v1"`, "doc")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, clk, WithFreshness(true))
	getBody(t, tr, o.URL)
	clk.Advance(3 * time.Second)
	hold := make(chan struct{})
	o.set(func(o *freshOrigin) { o.hold = hold })

	resp, _ := getBody(t, tr, o.URL) // starts the background revalidation
	assert.Contains(t, resp.Header.Get("Cache-Status"), "stale-while-revalidate")
	waitFor(t, "background revalidation at the origin", func() bool { return o.inside.Load() == 1 })

	clk.Advance(10 * time.Second) // past the window: callers must wait for the origin
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := getBody(t, tr, o.URL)
			assert.Equal(t, "doc", body)
			assert.Equal(t, ResultRevalidated, ResultOf(resp))
		}()
	}
	waitFor(t, "foreground callers joined the background exchange", func() bool { return tr.fx.flights.waitingAll() == n+1 })
	close(hold)
	wg.Wait()
	tr.waitBackground()
	assert.Equal(t, int64(1), o.conds.Load(), "one conditional request for all")
	goroutinesBack(t, base, tr)
}
