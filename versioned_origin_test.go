package etagcache

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// versionedOrigin serves every path as "path=P v=N lang=L" (L is the
// request's Accept-Language), with ETag "vN" for every variant, so that a
// body filed under the wrong variant or version shows as a wrong body. A
// POST to a path moves it to the next version. The test sets the answers'
// Cache-Control and Vary, and may hold conditional GETs at a gate.
type versionedOrigin struct {
	*httptest.Server
	clk *fakeClock

	mu       sync.Mutex
	version  map[string]int
	cc, vary string
	post     func(w http.ResponseWriter, r *http.Request) // the answer to a POST, after the version moved
	gate     chan struct{}                                // when set, conditional GETs wait for it
	arrived  chan string                                  // told the path of each held request
	conds    map[string]int                               // conditional GETs per path
}

func newVersionedOrigin(t *testing.T, clk *fakeClock, cc, vary string) *versionedOrigin {
	o := &versionedOrigin{clk: clk, version: map[string]int{}, cc: cc, vary: vary, conds: map[string]int{}}
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *versionedOrigin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	if o.version[r.URL.Path] == 0 {
		o.version[r.URL.Path] = 1
	}
	if r.Method == http.MethodPost {
		o.version[r.URL.Path]++
		post := o.post
		o.mu.Unlock()
		if post != nil {
			post(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v, cc, vary, gate, arrived := o.version[r.URL.Path], o.cc, o.vary, o.gate, o.arrived
	inm := r.Header.Get("If-None-Match")
	if inm != "" {
		o.conds[r.URL.Path]++
	}
	o.mu.Unlock()
	// The answer is made on arrival: a held request answers for the
	// version it found, as a slow origin would.
	if inm != "" && gate != nil {
		if arrived != nil {
			arrived <- r.URL.Path
		}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	h := w.Header()
	h.Set("Date", o.clk.Now().UTC().Format(http.TimeFormat))
	h.Set("ETag", fmt.Sprintf(`"v%d"`, v))
	if cc != "" {
		h.Set("Cache-Control", cc)
	}
	if vary != "" {
		h.Set("Vary", vary)
	}
	if inm == fmt.Sprintf(`"v%d"`, v) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = io.WriteString(w, o.body(r.URL.Path, v, r.Header.Get("Accept-Language")))
}

func (o *versionedOrigin) body(path string, v int, lang string) string {
	return fmt.Sprintf("path=%s v=%d lang=%s", path, v, lang)
}

func (o *versionedOrigin) set(f func(o *versionedOrigin)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func (o *versionedOrigin) condsFor(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conds[path]
}

// testStores are the stores a behaviour that must hold "in every store" is
// tried with, each made fresh.
func testStores(t *testing.T) map[string]func() Store {
	return map[string]func() Store{
		"memory": func() Store { return NewMemoryStore(0) },
		"bolt": func() Store {
			s, err := OpenBoltStore(filepath.Join(t.TempDir(), "cache.db"))
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
}

// newStoreTransport is newFreshTransport over a store of the test's.
func newStoreTransport(t *testing.T, clk *fakeClock, s Store, opts ...Option) *Transport {
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	tr := NewTransport(s, append([]Option{WithBase(base)}, opts...)...)
	tr.fx.clock = clk.Now
	return tr
}
