// Command bench measures etagcache side by side with
// github.com/gregjones/httpcache, in one run, against one local origin, and
// prints a Markdown table.
//
//	go run ./examples/bench                 # the full run (about two minutes)
//	go run ./examples/bench -quick          # a smoke test: one round of one request per batch
//	go run ./examples/bench -rounds 9 -o bench.md -svg bench.svg
//
// The implementations:
//
//   - bare-304: a plain http.Transport whose caller does If-None-Match by
//     hand. It is the floor: the caller already holds the body and only
//     reads the empty 304. For fairness, the caller then "serves" the body it
//     holds by reading it out of a bytes.Reader, the same work a caller of
//     etagcache does reading the body of the 200 it gets. (In the miss rows
//     it is a plain GET without any cache.)
//   - etagcache-mem (NewMemoryStore), etagcache-bbolt (OpenBoltStore in a
//     temporary folder), etagcache-httpcache-adapter
//     (httpcachestore.New(httpcache.NewMemoryCache())).
//   - httpcache-mem (httpcache.NewMemoryCache) and httpcache-disk
//     (diskcache.New in a temporary folder); the origin sends
//     Cache-Control: no-cache, so httpcache revalidates every time.
//
// The scenarios: steady 304 state (the entry stored first, then every
// measured request a revalidation) with bodies of 1 KiB, 64 KiB, 1 MiB and
// 16 MiB; the first fetch (a miss: a fresh URL each request, into a cache
// emptied before each batch) at the same sizes; and 8 goroutines polling 64
// URLs of 64 KiB in steady 304 state.
//
// Each implementation has its own http.Transport with 16 idle connections
// per host. Every request checks status, ETag, and the body's length and
// every byte (bytes.Equal against the origin's) after reading it into a
// reused buffer; that costs the same for every implementation.
//
// Measuring is interleaved: batch sizes are first calibrated per
// implementation to about -batch, then in each of -rounds rounds every
// implementation runs one batch, in an order rotated each round, so that
// drift of a shared machine hits all of them alike. ns/request is the median
// over rounds; ratios are medians over rounds of the ratio of two batches
// run in the same round; allocs/request and bytes/request come from
// runtime.MemStats deltas around each batch (the whole process: they include
// the in-process origin's allocations, the same for every implementation).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/etagcache/etagcache/internal/benchkit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 25, "interleaved rounds")
	batch := fs.Duration("batch", 30*time.Millisecond, "target duration of one batch of one implementation")
	quick := fs.Bool("quick", false, "tiny run for a smoke test: one round, one request per batch, no calibration")
	out := fs.String("o", "", "also write the Markdown to this file")
	svg := fs.String("svg", "", "also draw the ratios to bare-304 as an SVG chart in this file")
	only := fs.String("run", "", "only the scenarios whose name matches this regular expression")
	impls := fs.String("impls", "", "only these implementations, comma-separated (ratios need bare-304 and httpcache-mem)")
	verbose := fs.Bool("v", true, "progress on standard error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	cfg := benchkit.Config{Rounds: *rounds, BatchTime: *batch}
	if *quick {
		cfg = benchkit.QuickConfig()
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		for _, sc := range benchkit.Scenarios() {
			if re.MatchString(sc.Name) {
				cfg.Scenarios = append(cfg.Scenarios, sc)
			}
		}
		if len(cfg.Scenarios) == 0 {
			return fmt.Errorf("-run %q matches no scenario", *only)
		}
	}
	if *impls != "" {
		for _, name := range strings.Split(*impls, ",") {
			if !slices.Contains(benchkit.Impls, name) {
				return fmt.Errorf("-impls: unknown implementation %q (known: %s)", name, strings.Join(benchkit.Impls, ", "))
			}
			cfg.Impls = append(cfg.Impls, name)
		}
	}
	if *verbose {
		cfg.Log = stderr
	}
	tmp, err := os.MkdirTemp("", "etagcache-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg.TempDir = tmp

	origin := benchkit.NewOrigin()
	defer origin.Close()
	rep, err := benchkit.Run(ctx, origin, cfg)
	if err != nil {
		return err
	}
	md := rep.Markdown()
	if _, err := io.WriteString(stdout, md); err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(rep.SVG()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
