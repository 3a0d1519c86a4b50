package etagcache_test

// Freshness-mode benchmarks:
//
//	go test -bench 'FreshHit|CoalescedBurst' -run '^$' .
//
// BenchmarkFreshHit serves a fresh response from the store, without the
// origin: etagcache with WithFreshness(true) over a MemoryStore, and
// gregjones/httpcache over its memory cache, each RoundTrip read to the
// end. BenchmarkFreshHitSideBySide interleaves the two at 1 KiB and reports
// the ratio. BenchmarkCoalescedBurst sends bursts of 64 concurrent GETs for a
// cold URL and reports origin requests per burst.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gregjones/httpcache"

	"github.com/etagcache/etagcache"
)

var freshSizes = []int{1 << 10, 64 << 10, 1 << 20, 16 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return strconv.Itoa(n>>20) + "MiB"
	}
	return strconv.Itoa(n>>10) + "KiB"
}

// freshOrigin serves /N as N bytes, fresh for an hour.
func newFreshBenchOrigin(b *testing.B) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	bodies := map[int][]byte{}
	for _, n := range freshSizes {
		bodies[n] = make([]byte, n)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := strconv.Atoi(r.URL.Path[1:])
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"`+strconv.Itoa(n)+`"`)
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = w.Write(bodies[n])
	}))
	b.Cleanup(srv.Close)
	return srv, &hits
}

func freshImpls(srv *httptest.Server) map[string]http.RoundTripper {
	return map[string]http.RoundTripper{
		"etagcache":           etagcache.NewTransport(etagcache.NewMemoryStore(256<<20), etagcache.WithFreshness(true), etagcache.WithBase(&http.Transport{})),
		"gregjones-httpcache": &httpcache.Transport{Transport: &http.Transport{}, Cache: httpcache.NewMemoryCache(), MarkCachedResponses: true},
	}
}

func roundTripAll(b *testing.B, rt http.RoundTripper, req *http.Request) {
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	_ = resp.Body.Close()
}

func BenchmarkFreshHit(b *testing.B) {
	srv, hits := newFreshBenchOrigin(b)
	impls := freshImpls(srv)
	for _, n := range freshSizes {
		for _, name := range []string{"etagcache", "gregjones-httpcache"} {
			rt := impls[name]
			b.Run(sizeName(n)+"/"+name, func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, srv.URL+"/"+strconv.Itoa(n), nil)
				req.RequestURI = ""
				roundTripAll(b, rt, req) // the miss that stores it
				before := hits.Load()
				b.ReportAllocs()
				b.SetBytes(int64(n))
				b.ResetTimer()
				for range b.N {
					roundTripAll(b, rt, req)
				}
				b.StopTimer()
				if hits.Load() != before {
					b.Fatalf("%s asked the origin for a fresh response", name)
				}
			})
		}
	}
}

// BenchmarkFreshHitSideBySide: b.N rounds of 10,000 fresh hits at 1 KiB per
// implementation, interleaved; reports each one's ns/hit and
// x-faster = gregjones ns/hit ÷ etagcache ns/hit. Each batch starts right
// after a collection (outside the timing) and is long enough to trigger its
// own: so each implementation pays for the collections its own garbage
// causes, not for those of the other's, which would otherwise often run
// during the next batch.
func BenchmarkFreshHitSideBySide(b *testing.B) {
	srv, _ := newFreshBenchOrigin(b)
	impls := freshImpls(srv)
	req := httptest.NewRequest(http.MethodGet, srv.URL+"/1024", nil)
	req.RequestURI = ""
	for _, rt := range impls {
		roundTripAll(b, rt, req)
	}
	const batch = 10000
	var ours, theirs time.Duration
	for range b.N {
		for _, name := range []string{"etagcache", "gregjones-httpcache"} {
			b.StopTimer()
			runtime.GC()
			b.StartTimer()
			start := time.Now()
			for range batch {
				roundTripAll(b, impls[name], req)
			}
			if name == "etagcache" {
				ours += time.Since(start)
			} else {
				theirs += time.Since(start)
			}
		}
	}
	hitsTotal := float64(b.N * batch)
	b.ReportMetric(float64(ours.Nanoseconds())/hitsTotal, "ns/hit-etagcache")
	b.ReportMetric(float64(theirs.Nanoseconds())/hitsTotal, "ns/hit-gregjones")
	b.ReportMetric(float64(theirs)/float64(ours), "x-faster")
}

// BenchmarkCoalescedBurst: each op is a burst of 64 concurrent GETs for a
// new, cold URL (the origin takes 2 ms to answer); reports the origin
// requests per burst, with coalescing on and off.
func BenchmarkCoalescedBurst(b *testing.B) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(2 * time.Millisecond) // the origin's latency, not synchronisation
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"x"`)
		_, _ = io.WriteString(w, "burst")
	}))
	defer srv.Close()
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("coalescing=%v", on), func(b *testing.B) {
			base := &http.Transport{MaxIdleConnsPerHost: 64}
			defer base.CloseIdleConnections()
			tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithFreshness(true),
				etagcache.WithCoalescing(on), etagcache.WithBase(base))
			hits.Store(0)
			for i := range b.N {
				url := fmt.Sprintf("%s/%v/%d", srv.URL, on, i)
				var wg sync.WaitGroup
				start := make(chan struct{})
				for range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
						resp, err := tr.RoundTrip(req)
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
					}()
				}
				close(start)
				wg.Wait()
			}
			b.ReportMetric(float64(hits.Load())/float64(b.N), "origin-requests/burst")
		})
	}
}
