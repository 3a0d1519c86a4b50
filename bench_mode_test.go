package etagcache_test

// BenchmarkRevalidationByMode puts a revalidation in freshness mode beside
// the same revalidation in the default mode, measured in one run:
//
//	go test -run '^$' -bench RevalidationByMode -benchtime 10x -count 3 .
//
// Every request is a conditional GET answered 304 (the origin says
// no-cache, so freshness mode revalidates every time too), by one caller
// or by 8 goroutines each polling its own URL: nobody ever has a flight to
// join, so what freshness mode adds over the default mode is the price of
// being ready to coalesce. b.N is the number of rounds; each round runs a
// batch of requests with each mode, in turn, each batch right after a
// collection. Reported per mode: the median ns/request ("ns/req:MODE"),
// allocations per request in the whole process, the origin's included
// ("allocs/req:MODE"), and the median of the per-round ratio to the
// default mode ("x-default:MODE"). The mode "fresh-solo" is freshness mode
// with WithCoalescing(false), which tells the cost of freshness from that
// of coalescing.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/internal/benchkit"
)

func BenchmarkRevalidationByMode(b *testing.B) {
	modes := []struct {
		name string
		opts []etagcache.Option
	}{
		{"default", nil},
		{"fresh", []etagcache.Option{etagcache.WithFreshness(true)}},
		{"fresh-solo", []etagcache.Option{etagcache.WithFreshness(true), etagcache.WithCoalescing(false)}},
	}
	origin := benchkit.NewOrigin()
	b.Cleanup(origin.Close)
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, workers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/%dg", benchkit.SizeName(size), workers), func(b *testing.B) {
				const perWorker = 2000
				per := perWorker
				if workers > 1 {
					per = perWorker / 4
				}
				type run struct {
					name   string
					tr     *etagcache.Transport
					base   *http.Transport
					urls   []string
					ns     []float64
					allocs uint64
				}
				runs := make([]*run, len(modes))
				for i, m := range modes {
					base := &http.Transport{MaxIdleConnsPerHost: workers}
					b.Cleanup(base.CloseIdleConnections)
					r := &run{name: m.name, base: base,
						tr: etagcache.NewTransport(etagcache.NewMemoryStore(64<<20), append([]etagcache.Option{etagcache.WithBase(base)}, m.opts...)...)}
					for w := range workers {
						r.urls = append(r.urls, origin.URL+benchkit.Path(i, size, w))
					}
					runs[i] = r
				}
				// A caller's context can end, as a server's request context
				// can: one per worker, as cancellable as a real one.
				ctxs := make([]context.Context, workers)
				for w := range ctxs {
					ctx, cancel := context.WithCancel(context.Background())
					b.Cleanup(cancel)
					ctxs[w] = ctx
				}
				get := func(r *run, w int) error {
					req, err := http.NewRequestWithContext(ctxs[w], http.MethodGet, r.urls[w], nil)
					if err != nil {
						return err
					}
					resp, err := r.tr.RoundTrip(req)
					if err != nil {
						return err
					}
					n, err := io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if err == nil && (resp.StatusCode != http.StatusOK || n != int64(size)) {
						err = fmt.Errorf("%s: status %d, %d bytes", r.name, resp.StatusCode, n)
					}
					return err
				}
				for i, r := range runs { // store, then revalidate once
					full0, _ := origin.Counts(i)
					for w := range workers {
						for range 2 {
							if err := get(r, w); err != nil {
								b.Fatal(err)
							}
						}
					}
					if full, _ := origin.Counts(i); full-full0 != int64(workers) {
						b.Fatalf("%s: %d full fetches priming %d URLs", r.name, full-full0, workers)
					}
				}
				batch := func(r *run, i int) {
					full0, nm0 := origin.Counts(i)
					var ms runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&ms)
					mallocs := ms.Mallocs
					b.StartTimer()
					start := time.Now()
					var wg sync.WaitGroup
					errs := make([]error, workers)
					for w := range workers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for range per {
								if err := get(r, w); err != nil {
									errs[w] = err
									return
								}
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					runtime.ReadMemStats(&ms)
					r.allocs += ms.Mallocs - mallocs
					for _, err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
					full, nm := origin.Counts(i)
					if full != full0 || nm-nm0 != int64(workers*per) {
						b.Fatalf("%s: the origin answered %d×200 and %d×304, want 0 and %d", r.name, full-full0, nm-nm0, workers*per)
					}
					r.ns = append(r.ns, float64(elapsed.Nanoseconds())/float64(workers*per))
				}
				b.StopTimer()
				order := make([]int, len(runs))
				for round := range b.N {
					for k := range order {
						order[k] = (k + round) % len(runs) // each mode goes first in turn
					}
					for _, i := range order {
						batch(runs[i], i)
					}
				}
				b.ReportMetric(0, "ns/op") // the time of a whole round means nothing
				requests := float64(b.N * workers * per)
				for _, r := range runs {
					b.ReportMetric(median(r.ns), "ns/req:"+r.name)
					b.ReportMetric(float64(r.allocs)/requests, "allocs/req:"+r.name)
					if r != runs[0] {
						ratios := make([]float64, len(r.ns))
						for k := range ratios {
							ratios[k] = r.ns[k] / runs[0].ns[k]
						}
						b.ReportMetric(median(ratios), "x-default:"+r.name)
					}
				}
			})
		}
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
