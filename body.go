package etagcache

import (
	"context"
	"errors"
	"hash/crc32"
	"io"
	"math"
	"sync"
	"time"
)

// Bounds of the remainder that Close reads on behalf of a caller that
// stopped just before the end (a JSON decoder leaves the trailing newline
// and the final chunk unread). They are small on purpose: a caller that
// closes a body it abandoned half-way must not be made to download it.
const (
	maxRemainder  = 4 << 10
	remainderWait = time.Second
)

// Buffer growth. Memory follows the bytes that arrived, never the length
// the origin announced: nothing is allocated before the first bytes, and a
// stalled or lying origin then pins at most 64 KiB or sixteen times what it
// really sent. Bodies of known length up to 64 KiB get one exact
// allocation, up to 1 MiB two, up to 16 MiB three: each step copies what
// came before, and on a miss every copy and every fresh allocation of a
// large buffer (which the kernel must back with pages) is time the caller
// waits.
const (
	minBuffer   = 512      // first allocation for a body of unknown length
	knownBuffer = 64 << 10 // first allocation when the length is known
	knownGrowth = 16       // growth factor when the length is known
)

var errReadAfterClose = errors.New("etagcache: read on closed response body")

// storingBody passes a response body through to the caller and keeps a copy
// of what was read. When the body ends without error, and its length matches
// the announced Content-Length, commit receives the copy, in a slice whose
// capacity is within 10% of its length. A body that fails, is closed more
// than a small remainder before its end, or outgrows max is never
// committed, and no more than max bytes are ever held.
//
// Close may be called while another goroutine is blocked in Read: it does
// not wait for that Read, which then fails. Reads themselves must not be
// concurrent, as for any response body.
type storingBody struct {
	rc     io.ReadCloser
	ctx    context.Context // of the request; bounds the remainder read by Close
	max    int64
	want   int64 // Content-Length, or -1
	commit func([]byte)

	// remainderWait bounds how long Close reads a remainder (tests shorten it).
	remainderWait time.Duration

	// withSum makes the body keep the CRC-32C (Castagnoli) of what it
	// kept, computed as the bytes arrive, while they are still in the
	// processor's cache: a store that checksums bodies (BoltStore) then
	// need not read the whole body again. Set before the first Read.
	withSum bool

	mu      sync.Mutex // guards the fields below, never held across rc.Read
	buf     []byte
	sum     uint32 // CRC-32C of buf, when withSum
	reading bool   // a Read is inside rc.Read
	closed  bool
	done    bool // committed or abandoned: nothing more is kept
}

func newStoringBody(ctx context.Context, rc io.ReadCloser, contentLength, max int64, commit func([]byte)) *storingBody {
	if ctx == nil {
		ctx = context.Background()
	}
	return &storingBody{rc: rc, ctx: ctx, max: max, want: contentLength, commit: commit, remainderWait: remainderWait}
}

func (b *storingBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, errReadAfterClose
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	b.reading = false
	body, ok := b.record(p[:n], err)
	b.mu.Unlock()
	if ok {
		b.commit(trimmed(body))
	}
	return n, err
}

// Close closes the body. When the caller stopped just before the end, it
// first reads the small remainder, within maxRemainder bytes, the
// remainderWait and the request's context, and commits the body if it then
// ends cleanly.
func (b *storingBody) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return b.rc.Close()
	}
	b.closed = true
	allow, small := b.remainder()
	finish := !b.done && !b.reading && small && b.ctx.Err() == nil
	if !finish {
		// A Read may be blocked in rc: it fails once rc is closed, and finds
		// the body abandoned.
		b.abandon()
	}
	b.mu.Unlock()
	if finish {
		if body, ok := b.readRemainder(allow); ok {
			b.commit(trimmed(body))
		}
	}
	return b.rc.Close()
}

// remainder returns how many more bytes Close may read to finish the body,
// and whether that can be enough: the known rest of the body, or
// maxRemainder when the length is unknown. Called with mu held.
func (b *storingBody) remainder() (int64, bool) {
	if b.want < 0 {
		return maxRemainder, true
	}
	rest := b.want - int64(len(b.buf))
	return rest, rest <= maxRemainder
}

// readRemainder reads the rest of a body that Close found unfinished, and
// returns it whole if it ended cleanly. It reads in a goroutine so that the
// wait can be bounded; on timeout or cancellation it closes rc to unblock
// that goroutine and waits for it, so that none is left behind.
func (b *storingBody) readRemainder(allow int64) ([]byte, bool) {
	type result struct {
		body []byte
		ok   bool
	}
	res := make(chan result, 1)
	go func() {
		// One byte more than allowed tells a longer body from one that ends.
		p := make([]byte, min(allow+1, 4<<10))
		for zero := 0; zero < 100; {
			n, err := b.rc.Read(p[:min(int64(len(p)), allow+1)])
			allow -= int64(n)
			if n == 0 && err == nil {
				zero++
			}
			b.mu.Lock()
			body, ok := b.record(p[:n], err)
			if !ok && !b.done && allow < 0 {
				b.abandon() // longer than the remainder we agreed to read
			}
			done := b.done
			b.mu.Unlock()
			if ok || done {
				res <- result{body, ok}
				return
			}
		}
		b.mu.Lock()
		b.abandon()
		b.mu.Unlock()
		res <- result{}
	}()

	timer := time.NewTimer(b.remainderWait)
	defer timer.Stop()
	select {
	case r := <-res:
		return r.body, r.ok
	case <-timer.C:
	case <-b.ctx.Done():
	}
	_ = b.rc.Close()
	r := <-res // a body that ended just as time ran out is still whole
	return r.body, r.ok
}

// record keeps the bytes p that were read and notes err. It returns the
// body when it has just ended cleanly at the announced length. Called with
// mu held.
func (b *storingBody) record(p []byte, err error) ([]byte, bool) {
	if b.done {
		return nil, false
	}
	if len(p) > 0 && !b.keep(p) {
		b.abandon()
		return nil, false
	}
	switch {
	case err == io.EOF:
		body := b.buf
		b.abandon()
		if b.want < 0 || int64(len(body)) == b.want {
			return body, true
		}
	case err != nil:
		b.abandon()
	}
	return nil, false
}

// keep appends p to buf, growing it with the bytes that arrive: never past
// max, nor past the announced length, so that a body of known length ends
// in a buffer of exactly that capacity. It reports false when p does not
// fit: the body is over max or longer than announced.
func (b *storingBody) keep(p []byte) bool {
	limit := b.max
	if b.want >= 0 && b.want < limit {
		limit = b.want
	}
	need := int64(len(b.buf)) + int64(len(p))
	if need > limit {
		return false
	}
	if need > int64(cap(b.buf)) {
		c := 2 * int64(cap(b.buf))
		first := int64(minBuffer)
		if b.want >= 0 {
			// Fewer copies where the end is known: the last step lands on it.
			c = knownGrowth * int64(cap(b.buf))
			first = knownBuffer
		}
		c = min(max(c, need, first), limit, math.MaxInt)
		nb := make([]byte, len(b.buf), int(c))
		copy(nb, b.buf)
		b.buf = nb
	}
	b.buf = append(b.buf, p...)
	if b.withSum {
		b.sum = crc32.Update(b.sum, castagnoli, p)
	}
	return true
}

// checksum returns the CRC-32C of the bytes kept (see withSum).
func (b *storingBody) checksum() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sum
}

func (b *storingBody) abandon() {
	b.done = true
	b.buf = nil
}

// trimmed returns body in an exact-size copy when its buffer's spare capacity
// passes 10% of its length: a store counts what it keeps by length, and the
// spare capacity is memory all the same.
func trimmed(body []byte) []byte {
	if cap(body)-len(body) <= len(body)/10 {
		return body
	}
	return append(make([]byte, 0, len(body)), body...)
}
