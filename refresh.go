package etagcache

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// Background refreshes (stale-while-revalidate, RFC 5861 §3): a stale
// entry is served at once and revalidated behind the caller's back. Such
// work owns everything it reads (the request is cloned, its lookup rebuilt
// on the clone's header), so the caller may reuse its request as soon as
// RoundTrip returns. One refresh runs per entry at a time, at most
// maxRefreshes per Transport, each bounded by refreshTimeout; Close stops
// them and waits.
const (
	refreshTimeout = 30 * time.Second
	maxRefreshes   = 16
)

type refreshes struct {
	mu      sync.Mutex
	closed  bool
	running map[string]context.CancelFunc // entry → its refresh
	wg      sync.WaitGroup
}

// Close stops the Transport's background work (stale-while-revalidate
// refreshes) and waits for it to end. The Transport stays usable: a stale
// response that would have been refreshed in the background is then
// revalidated before it is served. Close does not close the store, and it
// always returns nil.
func (t *Transport) Close() error {
	bg := &t.fx.bg
	bg.mu.Lock()
	bg.closed = true
	for _, cancel := range bg.running {
		cancel()
	}
	bg.mu.Unlock()
	bg.wg.Wait()
	return nil
}

// refreshInBackground starts a refresh of the entry that l found, unless
// one is running for it already or too many are running (the entry is
// then served stale without one: a later request tries again). It
// reports false only once the Transport is closed, when nothing may start.
func (t *Transport) refreshInBackground(req *http.Request, l lookup, d decision) bool {
	bg := &t.fx.bg
	id := l.key + "\x00" + l.variant
	bg.mu.Lock()
	defer bg.mu.Unlock()
	switch {
	case bg.closed:
		return false
	case bg.running[id] != nil, len(bg.running) >= maxRefreshes:
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(req.Context()), refreshTimeout)
	if bg.running == nil {
		bg.running = make(map[string]context.CancelFunc)
	}
	bg.running[id] = cancel
	bg.wg.Add(1)

	// Everything the refresh reads is its own: the caller may reuse req.
	breq := req.Clone(ctx)
	l.h = canonicalHeader(breq.Header)
	l.part, l.vary = t.partitionFor(breq, l.h)
	d.action, d.fwd = actRevalidate, "stale"
	go func() {
		defer func() {
			cancel()
			bg.mu.Lock()
			delete(bg.running, id)
			bg.mu.Unlock()
			bg.wg.Done()
		}()
		resp, err := t.forward(breq, l, d)
		if err != nil {
			t.log.DebugContext(ctx, "etagcache: background revalidation failed", "key", redactKey(l.key), "err", redactErr(err, l.key))
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body) // to the end: that is what stores it
		_ = resp.Body.Close()
	}()
	return true
}

// waitBackground waits for the background refreshes started so far.
func (t *Transport) waitBackground() { t.fx.bg.wg.Wait() }
