package etagcache_test

// Benchmarks side by side with github.com/gregjones/httpcache. The harness
// (origin, implementations, correctness checks, interleaved rounds) is
// internal/benchkit, shared with `go run ./examples/bench`, which prints the
// whole comparison as one Markdown table.
//
//	go test -bench . -run '^$' ./                          # everything
//	go test -bench 'Revalidate/304-1KiB' -run '^$' ./      # one size, every implementation
//	go test -bench SideBySide -benchtime 7x -run '^$' ./   # interleaved, 7 rounds, ratios as metrics
//
// BenchmarkRevalidate, BenchmarkMiss and BenchmarkConcurrent are ordinary
// benchmarks, one implementation at a time (for benchstat, -cpuprofile and
// -memprofile). BenchmarkSideBySide runs every implementation interleaved
// round by round (b.N is the number of rounds) and reports each one's
// ns/request and its ratio to bare-304 ("x-bare:IMPL") measured in the
// same run.

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/etagcache/etagcache/internal/benchkit"
)

var benchOrigin = sync.OnceValue(benchkit.NewOrigin)

func benchScenarios(keep func(benchkit.Scenario) bool) []benchkit.Scenario {
	var s []benchkit.Scenario
	for _, sc := range benchkit.Scenarios() {
		if keep(sc) {
			s = append(s, sc)
		}
	}
	return s
}

// BenchmarkRevalidate: steady 304 state, one URL, each body size.
func BenchmarkRevalidate(b *testing.B) {
	benchEach(b, benchScenarios(func(sc benchkit.Scenario) bool { return sc.Kind == benchkit.Steady && sc.Workers == 1 }))
}

// BenchmarkMiss: the first fetch of a fresh URL, each body size.
func BenchmarkMiss(b *testing.B) {
	benchEach(b, benchScenarios(func(sc benchkit.Scenario) bool { return sc.Kind == benchkit.Miss }))
}

// BenchmarkConcurrent: 8 goroutines polling 64 URLs of 64 KiB, steady 304
// state; ns/op is wall time per request.
func BenchmarkConcurrent(b *testing.B) {
	benchEach(b, benchScenarios(func(sc benchkit.Scenario) bool { return sc.Workers > 1 }))
}

func benchEach(b *testing.B, scs []benchkit.Scenario) {
	for _, sc := range scs {
		b.Run(sc.Slug, func(b *testing.B) {
			for _, impl := range benchkit.Impls {
				b.Run(impl, func(b *testing.B) { benchOne(b, sc, impl) })
			}
		})
	}
}

func benchOne(b *testing.B, sc benchkit.Scenario, impl string) {
	ctx := context.Background()
	f, err := benchkit.NewFixture(ctx, benchOrigin(), sc, impl, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	b.SetBytes(int64(sc.Size))
	b.ResetTimer()
	// A miss batch holds a bounded number of bodies: run b.N requests in
	// as many batches as it takes, preparing each (emptying the cache)
	// with the timer stopped.
	for done := 0; done < b.N; {
		b.StopTimer()
		batch, err := f.Prepare(ctx, b.N-done)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		err = batch.Run()
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if err := batch.Verify(); err != nil {
			b.Fatal(err)
		}
		done += batch.N
	}
}

// BenchmarkSideBySide runs each scenario with every implementation
// interleaved, b.N rounds (use -benchtime Nx), and reports per
// implementation its median ns/request ("ns/req:IMPL") and the median of
// its per-round ratio to bare-304 ("x-bare:IMPL").
func BenchmarkSideBySide(b *testing.B) {
	for _, sc := range benchkit.Scenarios() {
		b.Run(sc.Slug, func(b *testing.B) {
			cfg := benchkit.Config{Rounds: b.N, Scenarios: []benchkit.Scenario{sc}, TempDir: b.TempDir()}
			res, err := benchkit.RunScenario(context.Background(), benchOrigin(), sc, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(0, "ns/op") // the time of a whole round means nothing
			for _, r := range res {
				b.ReportMetric(r.NsPerOp, "ns/req:"+r.Impl)
				if r.Impl != benchkit.Bare {
					b.ReportMetric(r.XBare, "x-bare:"+r.Impl)
				}
			}
		})
	}
}

// TestBenchHarnessQuick runs the whole comparison as `go run
// ./examples/bench -quick` does (one round, one request per batch) and
// checks that every request was correct (the harness fails on any wrong
// status, ETag or body byte, and on any batch the origin did not see as
// expected) and that the table has a row for every scenario and
// implementation.
func TestBenchHarnessQuick(t *testing.T) {
	cfg := benchkit.QuickConfig()
	cfg.TempDir = t.TempDir()
	origin := benchkit.NewOrigin()
	defer origin.Close()
	rep, err := benchkit.Run(context.Background(), origin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	scs := benchkit.Scenarios()
	if got, want := len(rep.Results), len(scs)*len(benchkit.Impls); got != want {
		t.Fatalf("%d results, want %d", got, want)
	}
	md := rep.Markdown()
	for _, sc := range scs {
		for _, impl := range benchkit.Impls {
			r, ok := rep.Find(sc.Name, impl)
			if !ok {
				t.Errorf("no result for %s, %s", sc.Name, impl)
				continue
			}
			if len(r.Rounds) != 1 || r.NsPerOp <= 0 || math.IsNaN(r.XBare) || math.IsNaN(r.XHTTPCacheMem) {
				t.Errorf("%s, %s: bad result %+v", sc.Name, impl, r)
			}
			if row := "| " + sc.Name + " | " + impl + " | "; !strings.Contains(md, row) {
				t.Errorf("table has no row %q", row)
			}
		}
	}
	if bare, _ := rep.Find("304 1KiB", benchkit.Bare); bare.XBare != 1 {
		t.Errorf("bare-304's ratio to itself is %v", bare.XBare)
	}
	if ts := rep.Targets(); len(ts) != 12 {
		t.Errorf("%d targets checked, want 12", len(ts))
	}
	if testing.Verbose() {
		t.Log("\n" + md)
	}
}
