package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// Client timeouts for the tests. The fault tests use short ones, so that a
// dead or frozen Redis costs a request a fraction of a second; the others
// use calm ones, so that a loaded machine (-race, two cores shared) does
// not turn into store errors they assert against.
const (
	faultTimeout = 500 * time.Millisecond
	calmTimeout  = 3 * time.Second
)

func newSingleClient(t testing.TB, addr string, timeout time.Duration) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr: addr, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolTimeout: timeout, MaxRetries: 1, ContextTimeoutEnabled: true,
		MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 16 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func newClusterClient(t testing.TB, addrs []string, timeout time.Duration) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: addrs, DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout,
		PoolTimeout: timeout, MaxRetries: 1, MaxRedirects: 2, ContextTimeoutEnabled: true,
		MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 16 * time.Millisecond,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// topology is a way to reach a Redis: a single node or a Cluster.
type topology struct {
	name   string
	client func(t testing.TB) redis.UniversalClient
	// each runs f on every master (for SCAN and INFO).
	each func(ctx context.Context, c redis.UniversalClient, f func(context.Context, *redis.Client) error) error
}

func eachSingle(ctx context.Context, c redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	return f(ctx, c.(*redis.Client))
}

// eachMaster runs f on every master, one at a time (ForEachMaster runs them
// concurrently).
func eachMaster(ctx context.Context, c redis.UniversalClient, f func(context.Context, *redis.Client) error) error {
	var mu sync.Mutex
	return c.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		return f(ctx, n)
	})
}

// topologies are the shared single node and the shared cluster.
func topologies() []topology {
	return []topology{
		{name: "single", each: eachSingle, client: func(t testing.TB) redis.UniversalClient {
			return newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
		}},
		{name: "cluster", each: eachMaster, client: func(t testing.TB) redis.UniversalClient {
			return newClusterClient(t, sharedCluster(t).Addrs(), calmTimeout)
		}},
	}
}

// testPrefix gives each test its own keys on the shared servers.
func testPrefix(t testing.TB) string {
	return "t:" + strings.NewReplacer("/", ":", " ", "_").Replace(t.Name()) + ":"
}

// origin is a test HTTP server of resources that may change. It serves
// each resource with a strong ETag (a digest of the body), answers a
// matching If-None-Match with 304, and records every request and every
// body version it served.
type origin struct {
	srv *httptest.Server
	URL string

	mu     sync.Mutex
	cur    map[string][]byte          // path -> current body
	served map[string]map[string]bool // path -> digests of bodies served
	log    []originReq
	// changeEvery, when > 0, makes every n-th request of a path change its
	// body after it was answered.
	changeEvery int
	hits        map[string]int
	// vary, when set, is sent as the Vary field.
	vary string
	// touch304 adds a field that changes on every 304, so the transport
	// persists the header (UpdateHeader).
	touch304 bool
}

type originReq struct {
	Path, IfNoneMatch string
	Status            int
}

func newOrigin(t testing.TB) *origin {
	o := &origin{cur: map[string][]byte{}, served: map[string]map[string]bool{}, hits: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	o.URL = o.srv.URL
	t.Cleanup(o.srv.Close)
	return o
}

func digestHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func etagOf(body []byte) string { return `"` + digestHex(body)[:24] + `"` }

// Set makes body the current version of path.
func (o *origin) Set(path string, body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cur[path] = body
}

// Served reports whether the origin ever served body for path.
func (o *origin) Served(path string, body []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.served[path][digestHex(body)]
}

// Log returns the requests so far.
func (o *origin) Log() []originReq {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]originReq(nil), o.log...)
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	defer o.mu.Unlock()
	body, ok := o.cur[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	etag := etagOf(body)
	h := w.Header()
	h.Set("Etag", etag)
	h.Set("Cache-Control", "no-cache")
	if o.vary != "" {
		h.Set("Vary", o.vary)
	}
	inm := r.Header.Get("If-None-Match")
	status := http.StatusOK
	if inm == etag {
		status = http.StatusNotModified
	}
	o.log = append(o.log, originReq{Path: r.URL.Path, IfNoneMatch: inm, Status: status})
	o.hits[r.URL.Path]++
	if o.changeEvery > 0 && o.hits[r.URL.Path]%o.changeEvery == 0 {
		o.cur[r.URL.Path] = fmt.Appendf(nil, "%s version %d %s", r.URL.Path, o.hits[r.URL.Path], strings.Repeat("x", o.hits[r.URL.Path]%97))
	}
	if status == http.StatusNotModified {
		if o.touch304 {
			h.Set("X-Served", fmt.Sprint(len(o.log)))
		}
		w.WriteHeader(status)
		return
	}
	if o.served[r.URL.Path] == nil {
		o.served[r.URL.Path] = map[string]bool{}
	}
	o.served[r.URL.Path][digestHex(body)] = true
	h.Set("Content-Length", fmt.Sprint(len(body)))
	_, _ = w.Write(body)
}

// worker is one member of the fleet: a Transport on its own Store.
type worker struct {
	t     *etagcache.Transport
	store *Store
	c     *http.Client
}

func newWorker(t testing.TB, c redis.UniversalClient, opts ...Option) *worker {
	st := New(c, opts...)
	base := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(base.CloseIdleConnections)
	tr := etagcache.NewTransport(st, etagcache.WithBase(base), etagcache.WithLogger(slog.New(slog.DiscardHandler)))
	return &worker{t: tr, store: st, c: tr.Client()}
}

type got struct {
	Status int
	Body   []byte
	Header http.Header
}

// get does a GET of url with the given request header fields.
func (w *worker) get(ctx context.Context, url string, hdr ...string) (got, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return got{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := w.c.Do(req)
	if err != nil {
		return got{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return got{Status: resp.StatusCode, Body: b, Header: resp.Header}, err
}

// mustGet is get that fails the test on an error or a status other than 200.
func (w *worker) mustGet(t testing.TB, url string, hdr ...string) got {
	t.Helper()
	g, err := w.get(context.Background(), url, hdr...)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, g.Status)
	return g
}
