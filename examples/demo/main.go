// Command demo shows etagcache at work without any network: it starts a
// local origin whose document changes now and then, polls it through the
// transport with a bbolt cache file in a temporary folder, then starts a
// second process on the same file to show that the cache outlives the
// process: its first poll is a revalidation, not a miss.
//
//	go run ./examples/demo
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/etagcache/etagcache"
)

// The child process finds the origin and the cache file in these.
const (
	envOrigin = "ETAGCACHE_DEMO_ORIGIN"
	envCache  = "ETAGCACHE_DEMO_CACHE"
)

func main() {
	if url := os.Getenv(envOrigin); url != "" {
		if err := poll("process 2", url, os.Getenv(envCache), 5); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	org := newOrigin()
	srv := httptest.NewServer(org)
	defer srv.Close()
	dir, err := os.MkdirTemp("", "etagcache-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cache := filepath.Join(dir, "cache.db")
	url := srv.URL + "/api/status"

	fmt.Printf("origin %s changes its document every %d requests; cache file %s\n\n", url, changeEvery, cache)
	if err := poll("process 1", url, cache, 10); err != nil {
		return err
	}

	// A new process on the same cache file starts with revalidations.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Println()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envOrigin+"="+url, envCache+"="+cache)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("second process: %w", err)
	}

	n, sent, full := org.tally()
	fmt.Printf("\norigin: %d requests, %d body bytes sent; without etagcache it would have sent %d (%.0f%% saved)\n",
		n, sent, full, 100*(1-float64(sent)/float64(full)))
	return nil
}

// poll GETs url count times through an etagcache transport backed by the
// bbolt file at cache, printing one line per poll.
func poll(name, url, cache string, count int) error {
	store, err := etagcache.OpenBoltStore(cache)
	if err != nil {
		return err
	}
	defer store.Close()
	wire := &wireCounter{base: http.DefaultTransport.(*http.Transport).Clone()}
	wire.base.DialContext = wire.dial
	tr := etagcache.NewTransport(store, etagcache.WithBase(wire))
	client := tr.Client()

	fmt.Printf("%-9s  %4s  %4s  %6s  %11s  %10s  %s\n", "", "poll", "wire", "caller", "wire bytes", "from store", "Cache-Status")
	for i := 1; i <= count; i++ {
		before := wire.bytes.Load()
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		fromStore := 0
		if etagcache.ResultOf(resp) == etagcache.ResultRevalidated {
			fromStore = len(body)
		}
		fmt.Printf("%-9s  %4d  %4d  %6d  %11d  %10d  %s\n", name, i, wire.status(), resp.StatusCode,
			wire.bytes.Load()-before, fromStore, resp.Header.Get("Cache-Status"))
	}
	st := tr.Stats()
	fmt.Printf("%s: %d requests, %d revalidated (304 -> 200), %d changed, %d body bytes served from the store, %d bytes on the wire\n",
		name, st.Requests, st.Revalidated, st.Changed, st.BytesServed, wire.bytes.Load())
	return nil
}

// wireCounter is the transport under etagcache: it counts the bytes read
// from the network and remembers the status the origin really sent.
type wireCounter struct {
	base  *http.Transport
	bytes atomic.Int64
	last  atomic.Int32
}

func (w *wireCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(r)
	if err == nil {
		w.last.Store(int32(resp.StatusCode))
	}
	return resp, err
}

func (w *wireCounter) status() int { return int(w.last.Load()) }

func (w *wireCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: &w.bytes}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// changeEvery is how often the origin's document changes, in requests.
const changeEvery = 4

// origin serves a JSON document of a few kilobytes with an ETag, answers
// 304 to a matching If-None-Match, and changes the document every
// changeEvery requests.
type origin struct {
	mu              sync.Mutex
	requests        int
	sent, wouldSend int
}

func newOrigin() *origin { return &origin{} }

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests++
	version := (o.requests-1)/changeEvery + 1
	o.mu.Unlock()

	doc, _ := json.MarshalIndent(map[string]any{
		"version": version,
		"status":  "green",
		"checks":  strings.Split(strings.Repeat("disk,cpu,memory,network,", 60), ","),
	}, "", "  ")
	etag := fmt.Sprintf(`"v%d"`, version)
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	sent := 0
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
	} else {
		sent = len(doc)
		_, _ = w.Write(doc)
	}
	o.mu.Lock()
	o.sent += sent
	o.wouldSend += len(doc)
	o.mu.Unlock()
}

func (o *origin) tally() (requests, sent, wouldSend int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.requests, o.sent, o.wouldSend
}
