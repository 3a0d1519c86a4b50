package prommetrics_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// A Transport and its store exported to Prometheus: three polls of one
// document, then what a scrape of /metrics says about them.
func ExampleNew() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, `{"status":"green"}`)
	}))
	defer origin.Close()

	store := etagcache.NewMemoryStore(0)
	tr := etagcache.NewTransport(store)
	metrics := prommetrics.New()
	if err := metrics.AddTransport("status", tr); err != nil {
		fmt.Println(err)
	}
	if err := metrics.AddStore("status", store); err != nil {
		fmt.Println(err)
	}
	reg := prometheus.NewRegistry() // or prometheus.MustRegister(metrics)
	reg.MustRegister(metrics)
	mux := http.NewServeMux() // or http.DefaultServeMux
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	for range 3 {
		resp, err := tr.Client().Get(origin.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// What Prometheus would scrape from /metrics.
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "etagcache_requests") || strings.HasPrefix(line, "etagcache_revalidated") ||
			strings.HasPrefix(line, "etagcache_store_served") || strings.HasPrefix(line, "etagcache_store_entries") {
			fmt.Println(line)
		}
	}
	// Output:
	// etagcache_requests_total{transport="status"} 3
	// etagcache_revalidated_total{transport="status"} 2
	// etagcache_store_entries{store="status"} 1
	// etagcache_store_served_bytes_total{transport="status"} 36
}
