// Command example polls a URL through an etagcache Transport and serves the
// cache's metrics for Prometheus at /metrics.
//
//	cd prommetrics && go run ./example                    # polls a local origin, offline
//	cd prommetrics && go run ./example -url https://api.github.com/zen -every 1m
//	curl -s localhost:9464/metrics | grep ^etagcache_
//
// The hit ratio, in PromQL:
//
//	rate(etagcache_revalidated_total[5m]) / rate(etagcache_requests_total[5m])
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil && !errors.Is(err, context.Canceled) {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

// run serves /metrics and polls until ctx is done. With -polls N it stops
// polling after N polls and goes on serving. ready, if not nil, receives
// the address /metrics is served at once the -polls polls are done (at
// once without -polls).
func run(ctx context.Context, args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9464", "address to serve /metrics at")
	target := fs.String("url", "", "URL to poll (default: a local origin whose document changes every 5th request)")
	every := fs.Duration("every", 2*time.Second, "time between polls")
	polls := fs.Int("polls", 0, "stop after this many polls (0: run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	if *target == "" {
		origin := httptest.NewServer(changingDocument())
		defer origin.Close()
		*target = origin.URL + "/status"
	}

	store := etagcache.NewMemoryStore(64 << 20)
	tr := etagcache.NewTransport(store, etagcache.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))))
	client := tr.Client()

	metrics := prommetrics.New()
	if err := metrics.AddTransport("poller", tr); err != nil {
		return err
	}
	if err := metrics.AddStore("poller", store); err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics, collectors.NewGoCollector())

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Fprintf(stderr, "polling %s every %v; metrics at http://%s/metrics\n", *target, *every, ln.Addr())
	if ready != nil && *polls <= 0 {
		ready <- ln.Addr().String()
	}

	tick := time.NewTicker(*every)
	defer tick.Stop()
	for n := 1; ; n++ {
		if err := poll(ctx, client, *target); err != nil {
			fmt.Fprintln(stderr, "poll:", err)
		}
		if *polls > 0 && n >= *polls {
			if ready != nil {
				ready <- ln.Addr().String()
			}
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	// Done polling: keep serving /metrics until interrupted, so the last
	// numbers can still be scraped.
	<-ctx.Done()
	return ctx.Err()
}

func poll(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body) // read to the end, so the body is stored
	return err
}

// changingDocument is an origin whose document changes every 5th request.
func changingDocument() http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		version := strconv.FormatInt((n.Add(1)-1)/5, 10)
		etag := `"v` + version + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, `{"version":%s,"padding":"%0512d"}`, version, 0)
	})
}
