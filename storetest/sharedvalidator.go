package storetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// RunSharedValidator reproduces, step by step, a race between two
// transports, one on a and one on b: the same store, or two handles onto
// the same data (two processes' stores on one file, two workers' stores
// on one server). The origin gives every tenant of a Vary: X-Tenant
// resource the same ETag, as an API whose ETag is a data version does (and
// as Apache's DeflateAlterETag NoChange does for gzip and identity):
//
//  1. B, for tenant b, misses; its response is held before it is stored.
//  2. A, for tenant a, misses and stores tenant a's entry.
//  3. A revalidates that entry: 304. Its header update is held.
//  4. B stores tenant b's entry, in the slot A's entry was in.
//  5. A's header update runs: it confirms tenant a's body, which the slot
//     no longer holds, so it must write nothing.
//
// Then the slot must still hold B's entry as B stored it, and every later
// request of either tenant, through either transport, must get its own
// body. A store without HeaderUpdater gets the transport's fallback, a Put
// of A's whole entry: the slot must then hold exactly that.
func RunSharedValidator(t *testing.T, a, b etagcache.Store, opts ...Option) {
	runSharedValidator(t, a, b, false, newConfig(opts))
}

func runSharedValidator(t *testing.T, a, b etagcache.Store, same bool, cfg config) {
	o := newTenantOrigin(t)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	// Each Put reaches the data before the next step, so that the steps
	// happen in the order given to every handle.
	ga, gb := &gated{Store: a, flush: cfg.flush}, &gated{Store: b, flush: cfg.flush}
	newTransport := func(s etagcache.Store) *etagcache.Transport {
		return etagcache.NewTransport(s, etagcache.WithBase(base), etagcache.WithLogger(slog.New(slog.DiscardHandler)))
	}
	ta, tb := newTransport(ga), newTransport(gb)
	url := o.srv.URL + "/doc"

	// 1
	bPutting, releaseB, bStored := make(chan struct{}), make(chan struct{}), make(chan struct{})
	gb.setBeforePut(func() { close(bPutting); <-releaseB })
	gb.setAfterPut(func() { close(bStored) })
	releaseOnce := sync.OnceFunc(func() { close(releaseB) })
	t.Cleanup(releaseOnce) // should a step fail
	resB := goGet(tb, url, "b")
	select {
	case <-bPutting:
	case r := <-resB:
		t.Fatalf("B's miss was not stored: %q, %v", r.body, r.err)
	}

	// 2
	body, err := get(ta, url, "a")
	require.NoError(t, err)
	require.Equal(t, "tenant=a v=1", body)
	require.Equal(t, 2, o.full(), "requests that got a body")

	// 3
	aUpdating := make(chan struct{})
	ga.setBeforeUpdate(func() { close(aUpdating); <-bStored })
	resA := goGet(ta, url, "a")
	select {
	case <-aUpdating:
	case r := <-resA:
		t.Fatalf("A's revalidation wrote no header update: %q, %v", r.body, r.err)
	}

	// 4, then 5
	releaseOnce()
	rb := <-resB
	require.NoError(t, rb.err)
	require.Equal(t, "tenant=b v=1", rb.body, "B's response")
	ra := <-resA
	require.NoError(t, ra.err)
	require.Equal(t, "tenant=a v=1", ra.body, "A's revalidated response")
	require.Equal(t, 1, o.notModified(), "A's revalidation")

	require.NoError(t, ga.flushError(), "flushing A's Puts")
	require.NoError(t, gb.flushError(), "flushing B's Puts")

	key, variant, bEntry := gb.lastPut()
	require.NotNil(t, bEntry, "B stored nothing")
	updKey, updVariant, updEntry, updErr := ga.lastUpdate()
	require.Equal(t, [2]string{key, variant}, [2]string{updKey, updVariant}, "A's update was not of the slot B filled; the race was not reproduced")
	got, err := b.Get(context.Background(), key, variant)
	require.NoError(t, err, "the slot B filled")
	if _, ok := a.(etagcache.HeaderUpdater); ok {
		// Unflushed, B's Put may have reached the data after A's update.
		if same || cfg.flush != nil || updErr != nil {
			assert.ErrorIs(t, updErr, etagcache.ErrNotFound, "A's header update of a body the store no longer held")
		}
		assert.Empty(t, diff(bEntry, got), "the slot B filled, after A's header update")
	} else {
		assert.NoError(t, updErr, "A's Put")
		assert.Empty(t, diff(updEntry, got), "the slot after A's Put")
	}

	// Every later request, of either tenant through either transport, gets
	// its own body.
	var wrong []string
	n := 0
	for range 3 {
		for _, tr := range []*etagcache.Transport{ta, tb} {
			for _, tenant := range []string{"a", "b"} {
				body, err := get(tr, url, tenant)
				require.NoError(t, err)
				if n++; body != "tenant="+tenant+" v=1" {
					wrong = append(wrong, fmt.Sprintf("tenant %s got %q", tenant, body))
				}
			}
		}
	}
	assert.Empty(t, wrong, "%d of %d later requests got another tenant's body", len(wrong), n)
	assert.Zero(t, ta.Stats().StoreErrors+tb.Stats().StoreErrors, "store errors")
}

// tenantOrigin serves /doc with Vary: X-Tenant and one ETag for every
// tenant. Its 304s carry a field that changes each time, so that the
// transport writes the merged header back.
type tenantOrigin struct {
	srv           *httptest.Server
	fullN, notMod atomic.Int64
}

func newTenantOrigin(t *testing.T) *tenantOrigin {
	o := &tenantOrigin{}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Etag", `"v1"`)
		h.Set("Vary", "X-Tenant")
		h.Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == `"v1"` {
			h.Set("X-Revalidated", strconv.FormatInt(o.notMod.Add(1), 10))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		o.fullN.Add(1)
		body := "tenant=" + r.Header.Get("X-Tenant") + " v=1"
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *tenantOrigin) full() int        { return int(o.fullN.Load()) }
func (o *tenantOrigin) notModified() int { return int(o.notMod.Load()) }

func get(tr *etagcache.Transport, url, tenant string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Tenant", tenant)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), err
}

type result struct {
	body string
	err  error
}

// goGet runs get in its own goroutine.
func goGet(tr *etagcache.Transport, url, tenant string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		body, err := get(tr, url, tenant)
		ch <- result{body, err}
	}()
	return ch
}

// gated is a store that runs hooks around the first Put and the first
// header update it sees, flushes every Put (with WithFlush), and remembers
// the last Put and update. It is always a
// HeaderUpdater: for a store without one it does what the transport would,
// a Put.
type gated struct {
	etagcache.Store
	flush               func(etagcache.Store) error
	flushErr            error
	mu                  sync.Mutex
	beforePut, afterPut func()
	beforeUpdate        func()
	putKey, putVariant  string
	putEntry            *etagcache.Entry
	updKey, updVariant  string
	updEntry            *etagcache.Entry
	updErr              error
}

func (g *gated) setBeforePut(f func())    { g.mu.Lock(); g.beforePut = f; g.mu.Unlock() }
func (g *gated) setAfterPut(f func())     { g.mu.Lock(); g.afterPut = f; g.mu.Unlock() }
func (g *gated) setBeforeUpdate(f func()) { g.mu.Lock(); g.beforeUpdate = f; g.mu.Unlock() }

func (g *gated) Put(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	g.mu.Lock()
	before, after := g.beforePut, g.afterPut
	g.beforePut, g.afterPut = nil, nil
	g.putKey, g.putVariant, g.putEntry = key, variant, snapshot(e)
	g.mu.Unlock()
	if before != nil {
		before()
	}
	err := g.Store.Put(ctx, key, variant, e)
	if err == nil && g.flush != nil {
		if ferr := g.flush(g.Store); ferr != nil {
			g.mu.Lock()
			g.flushErr = errors.Join(g.flushErr, ferr)
			g.mu.Unlock()
		}
	}
	if after != nil {
		after()
	}
	return err
}

func (g *gated) UpdateHeader(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	g.mu.Lock()
	before := g.beforeUpdate
	g.beforeUpdate = nil
	g.mu.Unlock()
	if before != nil {
		before()
	}
	var err error
	if hu, ok := g.Store.(etagcache.HeaderUpdater); ok {
		err = hu.UpdateHeader(ctx, key, variant, e)
	} else {
		err = g.Store.Put(ctx, key, variant, e)
	}
	g.mu.Lock()
	g.updKey, g.updVariant, g.updEntry, g.updErr = key, variant, snapshot(e), err
	g.mu.Unlock()
	return err
}

func (g *gated) flushError() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.flushErr
}

func (g *gated) lastPut() (key, variant string, e *etagcache.Entry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.putKey, g.putVariant, g.putEntry
}

func (g *gated) lastUpdate() (key, variant string, e *etagcache.Entry, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.updKey, g.updVariant, g.updEntry, g.updErr
}
