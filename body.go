package etagcache

import "io"

// storingBody passes a response body through to the caller and keeps a copy
// of what was read. When the caller reads to EOF without error, and the
// length matches the announced Content-Length, commit receives the copy.
// A body that fails, is closed early or outgrows max is never committed,
// and no more than max bytes are ever held.
//
// Like any response body it is not safe for concurrent Reads.
type storingBody struct {
	rc     io.ReadCloser
	buf    []byte
	max    int64
	want   int64 // Content-Length, or -1
	done   bool  // committed or abandoned
	commit func([]byte)
}

func newStoringBody(rc io.ReadCloser, contentLength, max int64, commit func([]byte)) *storingBody {
	b := &storingBody{rc: rc, max: max, want: contentLength, commit: commit}
	if contentLength > 0 && contentLength <= max {
		b.buf = make([]byte, 0, contentLength)
	}
	return b
}

func (b *storingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.done {
		return n, err
	}
	if n > 0 {
		if int64(len(b.buf))+int64(n) > b.max {
			b.abandon()
			return n, err
		}
		b.buf = appendCapped(b.buf, p[:n], b.max)
	}
	switch {
	case err == io.EOF:
		body := b.buf
		b.abandon()
		if b.want < 0 || int64(len(body)) == b.want {
			b.commit(body)
		}
	case err != nil:
		b.abandon()
	}
	return n, err
}

func (b *storingBody) Close() error {
	b.abandon()
	return b.rc.Close()
}

func (b *storingBody) abandon() {
	b.done = true
	b.buf = nil
}

// appendCapped appends p to buf, growing it at most to max bytes of capacity.
func appendCapped(buf, p []byte, max int64) []byte {
	if need := len(buf) + len(p); need > cap(buf) {
		c := 2*cap(buf) + len(p)
		if c < 512 {
			c = 512
		}
		if int64(c) > max {
			c = int(max)
		}
		nb := make([]byte, len(buf), c)
		copy(nb, buf)
		buf = nb
	}
	return append(buf, p...)
}
