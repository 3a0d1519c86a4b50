package etagcache

// The bodies of a coalesced exchange: what a caller alone in its flight
// reads (soloBody), and the broadcast that several callers read at their
// own pace from one read of the origin's body.

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"sync"
)

// bytesBody is implemented by bodies that hold all their bytes already (a
// response served from the store), so sharing them copies nothing.
type bytesBody interface{ allBytes() []byte }

// sharedResponse is the leader's response as the followers copy it.
type sharedResponse struct {
	resp     http.Response // its Header is a copy nobody gets; its Body is not used
	bytes    []byte        // the whole body, when known at once (hasBytes)
	hasBytes bool
	body     *broadcast // or the body as it arrives
}

// copyFor builds one follower's response: its own header map and body
// reader, its Read ending with ctx.
func (sr *sharedResponse) copyFor(ctx context.Context) *http.Response {
	r := new(http.Response)
	*r = sr.resp
	r.Header = sr.resp.Header.Clone()
	switch {
	case sr.body != nil:
		r.Body = sr.body.reader(ctx)
	case sr.hasBytes:
		r.Body = newStoredBody(sr.bytes)
	}
	return r
}

// drop gives back the share of a follower counted in the outcome that
// will not read it.
func (sr *sharedResponse) drop() {
	if sr != nil && sr.body != nil {
		sr.body.leaveOne()
	}
}

// soloBody is the origin's body as a caller alone in its flight reads it.
// Its Read ends with the caller's context: the flight's watch on that
// context (stop) cancels the exchange, and with it the body.
type soloBody struct {
	rc     io.ReadCloser
	ctx    context.Context // the caller's
	stop   func() bool
	cancel context.CancelFunc // the exchange's
	once   sync.Once
}

func (b *soloBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		if err != io.EOF && b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
		b.release()
	}
	return n, err
}

func (b *soloBody) Close() error {
	err := b.rc.Close()
	b.release()
	return err
}

// release ends the watch and the exchange once the caller is done.
func (b *soloBody) release() {
	b.once.Do(func() {
		b.stop()
		b.cancel()
	})
}

// broadcast shares one body among several readers. A goroutine of its own
// (pump) reads src into buf as the bytes come, so that no reader ever waits
// inside src.Read, where its context could not reach it; the readers copy
// from buf at their own pace.
type broadcast struct {
	src    io.ReadCloser
	want   int64 // the announced length, or -1
	max    int64
	cancel context.CancelFunc // ends the exchange
	probe  []byte             // the pump's: reads whose bytes may not fit buf
	closed sync.Once

	mu      sync.Mutex
	buf     []byte // what has arrived; bytes below len never change
	err     error  // how src ended (io.EOF when whole), or why nobody reads it any more
	over    []byte // bytes past max, read but not kept: the pump stopped there
	overErr error  // with over: the error of the read that brought them
	holders int    // callers that may still read
	changed chan struct{}
}

// errNobodyReads ends a broadcast whose readers have all left.
var errNobodyReads = errors.New("etagcache: nobody reads the shared body")

func newBroadcast(src io.ReadCloser, contentLength, maxSize int64, holders int, cancel context.CancelFunc) *broadcast {
	if contentLength < 0 {
		contentLength = -1
	}
	return &broadcast{src: src, want: contentLength, max: maxSize, cancel: cancel, holders: holders, changed: make(chan struct{})}
}

// signal wakes the readers that wait for a change; b.mu is held.
func (b *broadcast) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// end stops src and the exchange.
func (b *broadcast) end() {
	b.cancel()
	b.closed.Do(func() { _ = b.src.Close() })
}

// pump reads src into buf until it ends, it brings more than max, or
// everybody has left.
func (b *broadcast) pump() {
	defer func() {
		if v := recover(); v != nil {
			b.mu.Lock()
			if b.err == nil {
				b.err = panicked(v)
			}
			b.signal()
			b.mu.Unlock()
			b.end()
		}
	}()
	for {
		buf := b.buf // only the pump changes it
		p, direct := buf[len(buf):cap(buf)], true
		if len(p) == 0 || (b.want >= 0 && int64(len(buf)) >= b.want) {
			// Full, or as long as announced: read aside, and grow only for
			// bytes that arrive.
			if b.probe == nil {
				b.probe = make([]byte, minBuffer)
			}
			p, direct = b.probe, false
		}
		n, err := b.src.Read(p)
		if n > 0 && !direct {
			if int64(len(buf))+int64(n) > b.max {
				b.mu.Lock()
				if b.err == nil {
					b.over, b.overErr = p[:n], err
				}
				b.signal()
				b.mu.Unlock()
				return // a reader decides, when it gets there
			}
			buf = append(grow(buf, int64(n), b.want, b.max), p[:n]...)
		} else {
			buf = buf[:len(buf)+n]
		}
		b.mu.Lock()
		if b.err != nil { // everybody left meanwhile
			b.mu.Unlock()
			return
		}
		b.buf = buf
		if err != nil {
			b.err = err
		}
		b.signal()
		b.mu.Unlock()
		if err != nil {
			b.end()
			return
		}
	}
}

// grow returns buf with room for n more bytes, growing as storingBody.keep
// does (body.go): with the bytes that arrive, never past limit, landing on
// the announced length want when it is known (-1 if not). A stalled or
// lying origin then pins at most 64 KiB, or sixteen times what it sent.
func grow(buf []byte, n, want, limit int64) []byte {
	need := int64(len(buf)) + n
	c, first := 2*int64(cap(buf)), int64(minBuffer)
	if want >= 0 {
		c, first = knownGrowth*int64(cap(buf)), knownBuffer
	}
	c = max(c, need, first)
	if want >= need {
		c = min(c, want)
	}
	c = min(c, limit, math.MaxInt)
	nb := make([]byte, len(buf), int(c))
	copy(nb, buf)
	return nb
}

// leaveOne drops one holder; the last one out stops src and the exchange
// (a body nobody reads to its end is never stored, unless it has already
// arrived whole).
func (b *broadcast) leaveOne() {
	b.mu.Lock()
	b.holders--
	last := b.holders == 0
	if last && b.err == nil {
		b.err = errNobodyReads
		b.over = nil
		b.signal()
	}
	b.mu.Unlock()
	if last {
		b.end()
	}
}

// reader returns a new reader of b for a caller with context ctx, which
// leaves when ctx ends, even if it never reads again.
func (b *broadcast) reader(ctx context.Context) *broadcastReader {
	r := &broadcastReader{b: b, ctx: ctx}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { r.leave(ctx.Err()) })
		b.mu.Lock()
		r.stop = stop
		b.mu.Unlock()
	}
	return r
}

// broadcastReader is one caller's view of a broadcast.
type broadcastReader struct {
	b       *broadcast
	ctx     context.Context
	stop    func() bool // its watch on ctx, if any
	onLeave func()

	// Guarded by b.mu.
	off  int
	left bool
	why  error // what Read returns once left
	solo bool  // the last reader of a body past max: reads src itself

	// The solo reader's own.
	tail    []byte
	tailErr error
}

func (r *broadcastReader) Read(p []byte) (int, error) {
	b := r.b
	for {
		b.mu.Lock()
		switch {
		case r.left:
			err := r.why
			b.mu.Unlock()
			return 0, err
		case r.solo:
			b.mu.Unlock()
			return r.direct(p)
		case len(p) == 0:
			b.mu.Unlock()
			return 0, nil
		case r.off < len(b.buf):
			buf := b.buf
			b.mu.Unlock()
			n := copy(p, buf[r.off:]) // below len: never written again
			r.off += n
			return n, nil
		case b.err != nil:
			err := b.err
			b.mu.Unlock()
			r.leave(err)
			return 0, err
		case b.over != nil:
			if b.holders == 1 {
				// The others are gone: this one streams on alone.
				r.solo, r.tail, r.tailErr = true, b.over, b.overErr
				b.over, b.buf = nil, nil
				b.mu.Unlock()
				continue
			}
			b.err, b.over = ErrCoalescedBodyTooLarge, nil
			b.signal()
			b.mu.Unlock()
			b.end()
			continue
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-r.ctx.Done():
			r.leave(r.ctx.Err())
		}
	}
}

// direct reads the rest of a body too large to keep, for the one reader
// left: the bytes the pump read past max, then src itself.
func (r *broadcastReader) direct(p []byte) (int, error) {
	if len(r.tail) > 0 {
		n := copy(p, r.tail)
		r.tail = r.tail[n:]
		return n, nil
	}
	if r.tailErr != nil {
		err := r.tailErr
		r.leave(err)
		return 0, err
	}
	n, err := r.b.src.Read(p)
	if err != nil {
		if err != io.EOF && r.ctx.Err() != nil {
			err = r.ctx.Err()
		}
		r.leave(err)
	}
	return n, err
}

// leave marks the reader done, with why as what its Read returns from now
// on, and drops its hold on the broadcast.
func (r *broadcastReader) leave(why error) {
	b := r.b
	b.mu.Lock()
	if r.left {
		b.mu.Unlock()
		return
	}
	r.left, r.why = true, why
	stop := r.stop
	b.signal() // a Read of this reader may be waiting
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
	b.leaveOne()
}

func (r *broadcastReader) Close() error {
	r.leave(errReadAfterClose)
	return nil
}
