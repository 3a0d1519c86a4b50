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
//   - late joiners: a caller that arrives after the header came but while
//     the body still streams joins the same response instead of starting a
//     second exchange.
//   - a body each caller reads on its own: the origin's body is pumped once
//     into memory (never more than the maximum entry size) and every caller
//     streams from that buffer as it fills, so nobody waits for the end of
//     the body before the first bytes, as without coalescing.
//
// A response whose Content-Length already says it is larger than the
// maximum entry size is not shared: the first caller to take it gets it as
// it is, the others send their own requests. A body without a length that
// turns out larger makes the callers still reading it fail with
// ErrCoalescedBodyTooLarge.

// ErrCoalescedBodyTooLarge is returned by the body of a coalesced response
// (one shared by concurrent identical requests) that turned out, with no
// Content-Length announced, to be larger than the maximum entry size, when
// more of it was needed than could be kept. Disable coalescing with
// WithCoalescing(false), or raise WithMaxEntrySize, for such resources.
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
	refs   int             // guarded by coalescer.mu
	joined int             // callers that ever joined; guarded by coalescer.mu
	res    *sharedResponse // set once the header came; guarded by coalescer.mu
}

// sharedResponse is the origin's answer as every waiter copies it.
type sharedResponse struct {
	resp  *http.Response // metadata only: its Header and Body are never handed out
	bytes []byte         // the whole body, when known at once
	body  *broadcast     // or the body as it streams in
	solo  sync.Once      // hands an unshared response to one waiter
}

// do runs fn once for the concurrent callers that pass the same key and
// returns each its own response. led reports whether this caller's fn ran
// (the others were collapsed onto it). fn must return a response whose
// Body is read only through the pump; it runs under the flight's context.
func (c *coalescer) do(ctx context.Context, key string, maxSize int64, fn func(context.Context) (*http.Response, error)) (resp *http.Response, led bool, err error) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]*flight)
	}
	fl := c.m[key]
	if fl == nil {
		c.gen++
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{id: key + "\x00" + strconv.FormatUint(c.gen, 10), ctx: fctx, cancel: cancel}
		c.m[key] = fl
	}
	fl.refs++
	fl.joined++
	first := fl.joined == 1
	res := fl.res
	c.mu.Unlock()

	if res == nil {
		ch := c.g.DoChan(fl.id, func() (any, error) {
			r, err := fn(fl.ctx)
			if err != nil {
				return nil, err
			}
			sr := newSharedResponse(r, maxSize)
			c.mu.Lock()
			fl.res = sr
			c.mu.Unlock()
			return sr, nil
		})
		select {
		case <-ctx.Done():
			c.leave(key, fl)
			return nil, first, ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				c.leave(key, fl)
				return nil, first, r.Err
			}
			res = r.Val.(*sharedResponse)
		}
	}
	resp, err = res.copyFor(func() { c.leave(key, fl) })
	if err != nil {
		c.leave(key, fl)
		return nil, first, err
	}
	return resp, first, nil
}

// leave drops one caller's hold on a flight; the last one out cancels the
// exchange and forgets the flight.
func (c *coalescer) leave(key string, fl *flight) {
	c.mu.Lock()
	fl.refs--
	last := fl.refs == 0
	if last && c.m[key] == fl {
		delete(c.m, key)
	}
	c.mu.Unlock()
	if last {
		fl.cancel()
	}
}

// waiting returns how many callers hold the flight for key (for tests).
func (c *coalescer) waiting(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fl := c.m[key]; fl != nil {
		return fl.refs
	}
	return 0
}

// bytesBody is implemented by bodies that hold all their bytes already (a
// response served from the store), so sharing them copies nothing.
type bytesBody interface{ allBytes() []byte }

func newSharedResponse(r *http.Response, maxSize int64) *sharedResponse {
	sr := &sharedResponse{resp: r}
	switch b := r.Body.(type) {
	case nil:
	case bytesBody:
		sr.bytes = b.allBytes()
	default:
		if b == http.NoBody {
			break
		}
		if r.ContentLength > maxSize {
			return sr // too large to share; see copyFor
		}
		sr.body = newBroadcast(b, r.ContentLength, maxSize)
	}
	return sr
}

// copyFor builds one waiter's response: its own header map and body
// reader. release is called once when the waiter is done with the body.
func (sr *sharedResponse) copyFor(release func()) (*http.Response, error) {
	r := new(http.Response)
	*r = *sr.resp
	r.Header = sr.resp.Header.Clone()
	switch {
	case sr.body != nil:
		r.Body = &broadcastReader{b: sr.body, release: release}
	case sr.bytes != nil:
		r.Body = &releasingBody{ReadCloser: newStoredBody(sr.bytes), release: release}
	case sr.resp.Body == nil || sr.resp.Body == http.NoBody:
		release()
		r.Body = http.NoBody
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

// broadcast pumps one body into memory, once, for any number of readers
// that each read it at their own pace.
type broadcast struct {
	mu      sync.Mutex
	buf     []byte
	done    bool
	err     error         // io.EOF when complete
	changed chan struct{} // closed and replaced whenever buf or done change
}

func newBroadcast(src io.ReadCloser, contentLength, maxSize int64) *broadcast {
	b := &broadcast{changed: make(chan struct{})}
	if contentLength > 0 && contentLength <= maxSize {
		b.buf = make([]byte, 0, contentLength)
	}
	go b.pump(src, maxSize)
	return b
}

// pump reads src to its end. It ends when src does: at EOF, on error, or
// when the flight's context is cancelled under it (every reader left).
func (b *broadcast) pump(src io.ReadCloser, maxSize int64) {
	defer src.Close()
	chunk := make([]byte, 32<<10)
	for {
		n, err := src.Read(chunk)
		b.mu.Lock()
		if n > 0 {
			if int64(len(b.buf)+n) > maxSize {
				err = ErrCoalescedBodyTooLarge
			} else {
				b.buf = appendCapped(b.buf, chunk[:n], maxSize)
			}
		}
		if err != nil {
			b.done, b.err = true, err
		}
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
		if err != nil {
			return
		}
	}
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
	closed := r.closedCh()
	for {
		r.b.mu.Lock()
		buf, done, err, changed := r.b.buf, r.b.done, r.b.err, r.b.changed
		r.b.mu.Unlock()
		if r.off < len(buf) {
			n := copy(p, buf[r.off:])
			r.off += n
			return n, nil
		}
		if done {
			r.once.Do(r.release)
			return 0, err
		}
		select {
		case <-changed:
		case <-closed:
			return 0, errors.New("etagcache: read on closed body")
		}
	}
}

func (r *broadcastReader) Close() error {
	closed := r.closedCh()
	r.once.Do(func() {
		close(closed)
		r.release()
	})
	return nil
}
