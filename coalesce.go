package etagcache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"
)

// Coalescing: concurrent identical requests (same key, partition and
// variant; see flightKey) share one origin exchange. singleflight runs the
// exchange once for everyone waiting for its header; the flight below adds
// what singleflight lacks:
//
//   - a reference count of the callers still interested, from joining until
//     each has closed (or read to the end of) its body. The exchange runs
//     under a context detached from every caller's (context.WithoutCancel of
//     the first one's, so its values stay) and cancelled only when the count
//     falls to zero: a caller that gives up leaves, the others go on.
//   - a body each caller reads on its own. A caller alone in its flight gets
//     the response as it is, streaming as without coalescing. Several share
//     a broadcast: whoever needs bytes nobody has read yet reads them from
//     the origin and keeps them in memory (never more than the maximum entry
//     size), and the others read them from there at their own pace. No
//     goroutine is started: the readers drive it.
//
// Only callers that arrive while the header is awaited share; one that
// arrives later starts an exchange of its own, so no caller gets a response
// that was under way before it asked.
//
// A response whose Content-Length already says it is larger than the
// maximum entry size goes to one caller as it is; the others send their own
// requests. A body without a length that turns out larger streams on if only
// one reader is left, and otherwise fails with ErrCoalescedBodyTooLarge.

// ErrCoalescedBodyTooLarge is returned by the body of a response shared by
// concurrent identical requests that turned out, with no Content-Length
// announced, to be larger than the maximum entry size while several callers
// were still reading it. Turn coalescing off with WithCoalescing(false), or
// raise WithMaxEntrySize, for such resources.
var ErrCoalescedBodyTooLarge = errors.New("etagcache: coalesced response body larger than the maximum entry size")

// errNotShared tells a waiter to send its own request: the response was
// too large to share and another waiter took it.
var errNotShared = errors.New("etagcache: response not shared")

type coalescer struct {
	g   singleflight.Group
	mu  sync.Mutex
	m   map[string]*flight
	gen uint64
}

// flight is one shared exchange, alive while any caller holds it.
type flight struct {
	id     string // singleflight key: the flight key and a generation
	ctx    context.Context
	cancel context.CancelFunc
	refs   int  // callers holding it; guarded by coalescer.mu
	joined int  // callers that joined while the header was awaited
	open   bool // still in coalescer.m, accepting callers
}

// sharedResponse is the origin's answer as every waiter copies it.
type sharedResponse struct {
	resp     *http.Response // metadata: its Header is never handed out
	waiters  int            // how many joined the flight
	bytes    []byte         // the whole body, when known at once (hasBytes)
	hasBytes bool
	body     *broadcast // or the body as it is read
	solo     sync.Once  // hands an unshared body to one waiter
}

// do runs fn once for the concurrent callers that pass the same key and
// returns each its own response. led reports whether this caller's fn ran
// (the others were collapsed onto it). fn runs under the flight's context.
func (c *coalescer) do(ctx context.Context, key string, maxSize int64, fn func(context.Context) (*http.Response, error)) (resp *http.Response, led bool, err error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*flight)
	}
	fl := c.m[key]
	if fl == nil {
		c.gen++
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{id: key + "\x00" + strconv.FormatUint(c.gen, 10), ctx: fctx, cancel: cancel, open: true}
		c.m[key] = fl
	}
	fl.refs++
	fl.joined++
	led = fl.joined == 1
	// DoChan under the lock: a caller counted in the flight is also waiting
	// on its call, so the call cannot end (and a second one start) between
	// the two. DoChan does not block; fn takes the lock only when done.
	ch := c.g.DoChan(fl.id, func() (any, error) {
		r, err := fn(fl.ctx)
		c.mu.Lock()
		c.close(key, fl) // later callers start their own exchange
		n := fl.joined
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return newSharedResponse(r, n, maxSize), nil
	})
	c.mu.Unlock()
	var sr *sharedResponse
	select {
	case <-ctx.Done():
		c.leave(key, fl)
		return nil, led, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			c.leave(key, fl)
			return nil, led, r.Err
		}
		sr = r.Val.(*sharedResponse)
	}
	resp, err = sr.copyFor(func() { c.leave(key, fl) })
	if err != nil {
		c.leave(key, fl)
		return nil, led, err
	}
	return resp, led, nil
}

// close stops a flight from taking callers; c.mu is held.
func (c *coalescer) close(key string, fl *flight) {
	if fl.open {
		fl.open = false
		if c.m[key] == fl {
			delete(c.m, key)
		}
	}
}

// leave drops one caller's hold on a flight; the last one out cancels the
// exchange (and with it any body still being read).
func (c *coalescer) leave(key string, fl *flight) {
	c.mu.Lock()
	fl.refs--
	last := fl.refs == 0
	if last {
		c.close(key, fl)
	}
	c.mu.Unlock()
	if last {
		fl.cancel()
	}
}

// waiting returns how many callers wait on the open flight for key (for
// tests).
func (c *coalescer) waiting(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl := c.m[key]; fl != nil {
		return fl.refs
	}
	return 0
}

// waitingAll returns how many callers wait on open flights (for tests).
func (c *coalescer) waitingAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, fl := range c.m {
		n += fl.refs
	}
	return n
}

// bytesBody is implemented by bodies that hold all their bytes already (a
// response served from the store), so sharing them copies nothing.
type bytesBody interface{ allBytes() []byte }

func newSharedResponse(r *http.Response, waiters int, maxSize int64) *sharedResponse {
	sr := &sharedResponse{resp: r, waiters: waiters}
	if waiters == 1 {
		return sr // the caller alone gets the response as it is
	}
	switch b := r.Body.(type) {
	case nil:
	case bytesBody:
		sr.bytes, sr.hasBytes = b.allBytes(), true
	default:
		if b == http.NoBody || r.ContentLength > maxSize {
			break // not shared: see copyFor
		}
		sr.body = newBroadcast(b, r.ContentLength, maxSize, waiters)
	}
	return sr
}

// copyFor builds one waiter's response: its own header map and body
// reader. release is called once when the waiter is done with the body.
func (sr *sharedResponse) copyFor(release func()) (*http.Response, error) {
	r := new(http.Response)
	*r = *sr.resp
	if sr.waiters > 1 {
		r.Header = sr.resp.Header.Clone()
	}
	switch {
	case sr.body != nil:
		r.Body = &broadcastReader{b: sr.body, release: release}
	case sr.hasBytes:
		r.Body = &releasingBody{ReadCloser: newStoredBody(sr.bytes), release: release}
	case sr.resp.Body == nil || sr.resp.Body == http.NoBody:
		release()
	default:
		taken := false
		sr.solo.Do(func() { taken = true })
		if !taken {
			return nil, errNotShared
		}
		r.Body = &releasingBody{ReadCloser: sr.resp.Body, release: release}
	}
	return r, nil
}

// releasingBody calls release once, at EOF, on error or on Close.
type releasingBody struct {
	io.ReadCloser
	release func()
	once    sync.Once
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.release)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}

// broadcast shares one body among several readers. The reader that needs
// bytes beyond what has been read takes the turn to read them from src;
// the others wait for them, or for their own Close.
type broadcast struct {
	src     io.ReadCloser
	max     int64
	turn    chan struct{} // a token: whoever holds it reads src
	mu      sync.Mutex
	buf     []byte
	readers int   // readers not yet done
	err     error // set once src has ended (io.EOF when complete)
	solo    *broadcastReader
	changed chan struct{} // closed and replaced whenever buf or err change
}

func newBroadcast(src io.ReadCloser, contentLength, maxSize int64, readers int) *broadcast {
	b := &broadcast{src: src, max: maxSize, readers: readers, turn: make(chan struct{}, 1), changed: make(chan struct{})}
	b.turn <- struct{}{}
	if contentLength > 0 && contentLength <= maxSize {
		b.buf = make([]byte, 0, contentLength)
	}
	return b
}

// broadcastReader is one reader's view of a broadcast.
type broadcastReader struct {
	b       *broadcast
	off     int
	release func()
	once    sync.Once
	closed  chan struct{}
	mu      sync.Mutex // guards closed's creation
}

func (r *broadcastReader) closedCh() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed == nil {
		r.closed = make(chan struct{})
	}
	return r.closed
}

func (r *broadcastReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, closed := r.b, r.closedCh()
	for {
		b.mu.Lock()
		buf, err, changed, solo := b.buf, b.err, b.changed, b.solo
		b.mu.Unlock()
		switch {
		case solo == r:
			return r.direct(p)
		case r.off < len(buf):
			n := copy(p, buf[r.off:])
			r.off += n
			return n, nil
		case err != nil:
			r.done()
			return 0, err
		}
		select {
		case <-b.turn:
			n, err := r.fill(p)
			b.turn <- struct{}{}
			if n > 0 || err != nil {
				if err != nil {
					r.done()
				}
				return n, err
			}
		case <-changed:
		case <-closed:
			return 0, errors.New("etagcache: read on closed body")
		}
	}
}

// fill reads the next bytes from src into p and the shared buffer; the
// caller holds the turn.
func (r *broadcastReader) fill(p []byte) (int, error) {
	b := r.b
	b.mu.Lock()
	caughtUp := r.off == len(b.buf) && b.err == nil
	b.mu.Unlock()
	if !caughtUp {
		return 0, nil // someone else read meanwhile: take it from buf
	}
	n, err := b.src.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > 0 && int64(len(b.buf)+n) > b.max {
		if b.readers == 1 {
			// The others are gone: this one streams on alone.
			b.solo, b.buf = r, nil
			return n, err
		}
		n, err = 0, ErrCoalescedBodyTooLarge
	}
	if n > 0 {
		b.buf = appendBounded(b.buf, p[:n], b.max)
		r.off += n
	}
	if err != nil {
		b.err = err
		_ = b.src.Close()
	}
	close(b.changed)
	b.changed = make(chan struct{})
	if err == io.EOF && n > 0 {
		err = nil // this reader gets EOF on its next call, like the others
	}
	return n, err
}

// direct reads straight from src, once this reader is the last one left
// of a body too large to keep.
func (r *broadcastReader) direct(p []byte) (int, error) {
	n, err := r.b.src.Read(p)
	if err != nil {
		r.done()
	}
	return n, err
}

// done marks this reader finished: the last one closes src (a body nobody
// reads to its end is never stored) and releases the flight.
func (r *broadcastReader) done() {
	r.once.Do(func() {
		b := r.b
		b.mu.Lock()
		b.readers--
		last := b.readers == 0 && b.err == nil
		b.mu.Unlock()
		if last {
			_ = b.src.Close()
		}
		r.release()
	})
}

func (r *broadcastReader) Close() error {
	closed := r.closedCh()
	r.mu.Lock()
	select {
	case <-closed:
	default:
		close(closed)
	}
	r.mu.Unlock()
	r.done()
	return nil
}

// appendBounded appends p to buf, never growing its capacity past max.
func appendBounded(buf, p []byte, limit int64) []byte {
	if need := len(buf) + len(p); need > cap(buf) {
		c := min(int64(max(2*cap(buf), need, 512)), limit)
		nb := make([]byte, len(buf), c)
		copy(nb, buf)
		buf = nb
	}
	return append(buf, p...)
}
