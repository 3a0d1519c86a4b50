package etagcache_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/etagcache/etagcache"
)

// With freshness on, a response that is still fresh by its max-age is
// served from the store without asking the origin.
func ExampleWithFreshness() {
	var asked atomic.Int32
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"cfg-v1"`)
		fmt.Fprint(w, `{"feature":true}`)
	}))
	defer origin.Close()

	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithFreshness(true)).Client()
	show(client, origin.URL+"/config")
	show(client, origin.URL+"/config")
	fmt.Println("origin asked", asked.Load(), "time")
	// Output:
	// 200 miss {"feature":true}
	// 200 hit {"feature":true}
	// origin asked 1 time
}

// WithStaleIfError serves the stored response when the origin fails, for
// origins that send no stale-if-error window of their own.
func ExampleWithStaleIfError() {
	var down atomic.Bool
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("ETag", `"s-v1"`)
		fmt.Fprint(w, "status page")
	}))
	defer origin.Close()

	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithStaleIfError(time.Hour)).Client()
	show(client, origin.URL+"/status")
	down.Store(true)
	show(client, origin.URL+"/status")
	// Output:
	// 200 miss status page
	// 200 hit status page
}

// WithIgnoredQueryParams leaves a cache-buster out of the key, so requests
// that differ only in it share one entry.
func ExampleWithIgnoredQueryParams() {
	origin := newExampleOrigin()
	defer origin.Close()

	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithIgnoredQueryParams("_")).Client()
	show(client, origin.URL+"/repo?_=1712")
	show(client, origin.URL+"/repo?_=1713")
	// Output:
	// 200 miss {"path":"/repo"}
	// 200 revalidated {"path":"/repo"}
}

// WithCoalescing(true) makes concurrent identical requests share one
// request to the origin, also without freshness.
func ExampleWithCoalescing() {
	origin := newExampleOrigin()
	defer origin.Close()

	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithCoalescing(true)).Client()
	show(client, origin.URL+"/repo")
	// Output:
	// 200 miss {"path":"/repo"}
}

// WithBoltRecover sets a damaged or foreign cache file aside and starts an
// empty one, with one log line (here to WithBoltLogger's logger), instead
// of refusing to open it.
func ExampleWithBoltRecover() {
	dir, err := os.MkdirTemp("", "etagcache-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "http.db")
	_ = os.WriteFile(path, []byte("not a cache file"), 0o600)

	_, err = etagcache.OpenBoltStore(path)
	fmt.Println("without recovery, refused:", errors.Is(err, etagcache.ErrIncompatibleFile) || errors.Is(err, etagcache.ErrCorruptFile))

	var logs strings.Builder
	store, err := etagcache.OpenBoltStore(path, etagcache.WithBoltRecover(true),
		etagcache.WithBoltLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	fmt.Println("with recovery, log lines:", strings.Count(logs.String(), "\n"))
	// Output:
	// without recovery, refused: true
	// with recovery, log lines: 1
}

// A program that serves stale responses while refreshing them in the
// background stops those refreshes with Close before it exits, so that
// none is cut off half-way by the process ending and none outlives the
// Transport in a test.
func ExampleTransport_Close() {
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithFreshness(true))
	defer tr.Close() // stops the background refreshes and waits for them

	client := tr.Client()
	resp, err := client.Get("https://config.example/flags")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}
