package etagcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Coalescing: concurrent identical requests (same key, partition and
// variant; see flightKey) share one origin exchange, a flight.
//
// The first caller, the leader, runs the exchange in its own goroutine, as
// it would without coalescing: a caller that finds no flight to join pays
// for a flight record and a watch on its context, and starts no goroutine.
// Callers that arrive while the leader awaits the header, the followers,
// wait on a channel for the outcome. Only they share: one that arrives
// later starts an exchange of its own, so no caller gets a response that
// was under way before it asked.
//
// Every caller ends at its own context's end, and the exchange goes on for
// the callers still there:
//
//   - The exchange runs under a context of its own, with the leader's values
//     and none of its cancellation, so that the body it brings outlives the
//     leader if others read it.
//   - While the header is awaited, the exchange is the leader's: its
//     goroutine is inside it and can return only when it ends, so the end
//     of the leader's context cancels the exchange, and once it has
//     returned the followers start again among themselves (the first
//     becomes the leader of a new flight, the others join it). That costs
//     the origin a second request, only when a leader gives up before its
//     header arrives, and never more requests than callers; no caller
//     waits past its own context for another's exchange.
//   - A body shared by several callers is read from the origin by a
//     goroutine of its own into memory (never more than the maximum entry
//     size, grown with the bytes that arrive), from which each caller reads
//     at its own pace; a caller whose context ends, or who closes, leaves,
//     and the last one out cancels the exchange. A caller alone gets the
//     origin's body as it is, whose Read ends, with the exchange, when the
//     caller's context does.
//
// A response whose Content-Length already says it is larger than the
// maximum entry size goes to the leader as it is; the followers send their
// own requests. A body without a length that turns out larger streams on
// if only one reader is left, and otherwise fails with
// ErrCoalescedBodyTooLarge. A panic below the cache, in the exchange or in
// a shared body's read, becomes an error for every caller that shared it.

// ErrCoalescedBodyTooLarge is returned by the body of a response shared by
// concurrent identical requests that turned out, with no Content-Length
// announced, to be larger than the maximum entry size while several callers
// were still reading it. (Callers that left before its header arrived do not
// count; a caller left alone reads on.) Turn coalescing off with
// WithCoalescing(false), or raise WithMaxEntrySize, for such resources.
var ErrCoalescedBodyTooLarge = errors.New("etagcache: coalesced response body larger than the maximum entry size")

// errNotShared tells a follower to send its own request: the response was
// too large to share, or the leader's share predicate said it does not fit
// this follower.
var errNotShared = errors.New("etagcache: response not shared")

// errRetry tells a follower that the leader left before the header: it
// joins, or leads, a new flight.
var errRetry = errors.New("etagcache: flight abandoned by its leader")

// errPanicked wraps the value of a panic below the cache.
var errPanicked = errors.New("etagcache: panic below the cache")

func panicked(v any) error { return fmt.Errorf("%w: %v", errPanicked, v) }

// exchangeFunc does a flight's origin exchange under ctx, for the leader.
// Besides the response it may return share, which says whether the response
// fits a follower's request (the caller whose request it is gets it in any
// case); nil means it fits every follower. A follower it does not fit gets
// errNotShared and sends its own request. share runs in the follower's
// goroutine, once per follower, after the header has arrived; it must not
// modify the request or the response.
type exchangeFunc func(ctx context.Context) (resp *http.Response, share func(follower *http.Request) bool, err error)

type coalescer struct {
	mu sync.Mutex
	m  map[string]*flight // the flights awaiting their header
}

// flight is one shared exchange.
type flight struct {
	key    string
	parent detached // the exchange context's parent: the leader's values
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by coalescer.mu.
	followers int           // followers counted in the outcome
	wake      chan struct{} // made by the first follower; closed once the outcome is set

	// The outcome, set before wake is closed; read-only after.
	err   error
	share func(*http.Request) bool
	sr    *sharedResponse
}

// detached has the values of a context and none of its cancellation or
// deadline, as context.WithoutCancel, but inside the flight: no allocation
// of its own. It is only ever the parent of the flight's cancelCtx, which
// answers the context package's own questions about cancellation itself.
type detached struct{ ctx context.Context }

func (*detached) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*detached) Done() <-chan struct{}       { return nil }
func (*detached) Err() error                  { return nil }
func (d *detached) Value(key any) any         { return d.ctx.Value(key) }

// do runs fn once for the concurrent callers that pass the same key and
// returns each its own response (its own header map and body reader). led
// reports whether this caller's fn ran. A follower's response is the
// leader's unless share refused it or it was too large to share, in which
// case do returns errNotShared and the follower is to send its own request.
func (c *coalescer) do(req *http.Request, key string, maxSize int64, fn exchangeFunc) (resp *http.Response, led bool, err error) {
	ctx := req.Context()
	for {
		fl := &flight{key: key} // the common case leads: allocated outside the lock
		fl.parent.ctx = ctx
		c.mu.Lock()
		if f := c.m[key]; f != nil {
			resp, err := c.follow(req, f) // unlocks c.mu
			if err == errRetry && ctx.Err() == nil {
				continue
			}
			if err == errRetry {
				err = ctx.Err()
			}
			return resp, false, err
		}
		if c.m == nil {
			c.m = make(map[string]*flight)
		}
		c.m[key] = fl
		c.mu.Unlock()
		fl.ctx, fl.cancel = context.WithCancel(&fl.parent)
		resp, err := c.lead(ctx, fl, maxSize, fn)
		return resp, true, err
	}
}

// lead runs the exchange in the leader's goroutine and hands the outcome
// to the followers that are still there. While the header is awaited, the
// end of the leader's context cancels the exchange; so does it afterwards
// while the leader alone reads the body.
func (c *coalescer) lead(ctx context.Context, fl *flight, maxSize int64, fn exchangeFunc) (*http.Response, error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, fl.cancel)
	}
	resp, share, err := runExchange(fl.ctx, fn)

	c.mu.Lock()
	c.close(fl) // later callers start their own exchange
	if fl.followers == 0 {
		c.mu.Unlock()
		if err != nil {
			stopWatch(stop)
			fl.cancel()
			if ctx.Err() != nil {
				err = ctx.Err() // not the flight's own cancellation
			}
			return nil, err
		}
		return leadAlone(fl, ctx, resp, stop), nil
	}
	if stop != nil && !stop() {
		// The leader's context ended and cancelled the exchange before
		// the others could be given it: they start again.
		fl.settle(errRetry, nil, nil)
		c.mu.Unlock()
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		return nil, ctx.Err()
	}
	switch {
	case err != nil:
		fl.settle(err, nil, nil)
		c.mu.Unlock()
		fl.cancel()
		return nil, err
	case streams(resp.Body) && resp.ContentLength > maxSize:
		// Too large to keep for the others: the leader's, as it is.
		fl.settle(errNotShared, nil, nil)
		c.mu.Unlock()
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, fl.cancel)
		}
		return leadAlone(fl, ctx, resp, stop), nil
	}
	sr := &sharedResponse{resp: *resp}
	sr.resp.Header = resp.Header.Clone() // the followers copy this one; the leader keeps its own
	if b, ok := resp.Body.(bytesBody); ok {
		sr.bytes, sr.hasBytes = b.allBytes(), true
	}
	if !streams(resp.Body) {
		// Nothing more comes from the origin: the exchange is over.
		fl.settle(nil, share, sr)
		c.mu.Unlock()
		fl.cancel()
		return resp, nil
	}
	sr.body = newBroadcast(resp.Body, resp.ContentLength, maxSize, fl.followers+1, fl.cancel)
	resp.Body = sr.body.reader(ctx)
	fl.settle(nil, share, sr)
	c.mu.Unlock()
	go sr.body.pump()
	return resp, nil
}

// leadAlone hands the leader the response as it is, still watched by stop
// (nil: a context that never ends).
func leadAlone(fl *flight, ctx context.Context, resp *http.Response, stop func() bool) *http.Response {
	if !streams(resp.Body) {
		// Nothing more comes from the origin: the exchange is over.
		stopWatch(stop)
		fl.cancel()
		return resp
	}
	if stop == nil {
		// A context that never ends: nothing to watch. The body keeps
		// the exchange's context, which has no resources to release.
		return resp
	}
	resp.Body = &soloBody{rc: resp.Body, ctx: ctx, stop: stop, cancel: fl.cancel}
	return resp
}

// streams reports whether reading body may wait for the origin.
func streams(body io.ReadCloser) bool {
	if body == nil || body == http.NoBody {
		return false
	}
	_, inMemory := body.(bytesBody)
	return !inMemory
}

// runExchange calls fn, turning a panic into an error: the followers wait
// for this goroutine's word, and must get it.
func runExchange(ctx context.Context, fn exchangeFunc) (resp *http.Response, share func(*http.Request) bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			resp, share, err = nil, nil, panicked(v)
		}
	}()
	resp, share, err = fn(ctx)
	if resp == nil && err == nil {
		err = errors.New("etagcache: the exchange returned neither a response nor an error")
	}
	return resp, share, err
}

func stopWatch(stop func() bool) {
	if stop != nil {
		stop()
	}
}

// settle sets the flight's outcome and wakes the followers; coalescer.mu
// is held.
func (fl *flight) settle(err error, share func(*http.Request) bool, sr *sharedResponse) {
	fl.err, fl.share, fl.sr = err, share, sr
	close(fl.wake)
}

// follow waits for the outcome of fl, which c.mu holds open, and releases
// c.mu.
func (c *coalescer) follow(req *http.Request, fl *flight) (*http.Response, error) {
	fl.followers++
	if fl.wake == nil {
		fl.wake = make(chan struct{})
	}
	wake := fl.wake
	c.mu.Unlock()
	ctx := req.Context()
	select {
	case <-wake:
	case <-ctx.Done():
		c.mu.Lock()
		select {
		case <-wake: // counted in the outcome: give its share back
		default:
			fl.followers--
			c.mu.Unlock()
			return nil, ctx.Err()
		}
		c.mu.Unlock()
		fl.sr.drop()
		return nil, ctx.Err()
	}
	if fl.err != nil {
		return nil, fl.err
	}
	if fits, err := fl.fits(req); !fits {
		fl.sr.drop()
		return nil, err
	}
	return fl.sr.copyFor(ctx), nil
}

// fits asks the leader's share predicate whether the response fits a
// follower's request: if not, the error is errNotShared, or the
// predicate's panic as an error (the follower's share is given back either
// way).
func (fl *flight) fits(req *http.Request) (fits bool, err error) {
	if fl.share == nil {
		return true, nil
	}
	defer func() {
		if v := recover(); v != nil {
			fits, err = false, fmt.Errorf("etagcache: panic in the share predicate: %v", v)
		}
	}()
	if fl.share(req) {
		return true, nil
	}
	return false, errNotShared
}

// close stops a flight from taking callers; c.mu is held.
func (c *coalescer) close(fl *flight) {
	if c.m[fl.key] == fl {
		delete(c.m, fl.key)
	}
}

// waiting returns how many callers wait on the flight for key that is
// awaiting its header (for tests).
func (c *coalescer) waiting(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl := c.m[key]; fl != nil {
		return 1 + fl.followers
	}
	return 0
}

// waitingAll returns how many callers wait on flights awaiting their
// header (for tests).
func (c *coalescer) waitingAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, fl := range c.m {
		n += 1 + fl.followers
	}
	return n
}
