package etagcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// ownTransport is a base transport of the test's own, so that its
// connections are closed at the end of the test.
func ownTransport(t testing.TB) *http.Transport {
	base := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(base.CloseIdleConnections)
	return base
}

// withinBound runs f and fails the test if it has not returned after a
// generous wall-clock limit: f must not hang, however slow the machine.
func withinBound(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return", what)
	}
}

// A buffer the size of the announced Content-Length must not be
// allocated before the bytes arrive.
func TestStalledBodiesDoNotPinAnnouncedLength(t *testing.T) {
	const n, announced = 32, 16 << 20
	release := make(chan struct{})
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"big"`)
		w.Header().Set("Content-Length", strconv.Itoa(announced))
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // the body never comes
		case <-release:
		case <-r.Context().Done():
		}
	})
	ms := NewMemoryStore(0)
	c := NewTransport(ms, WithBase(ownTransport(t))).Client()
	var resps []*http.Response
	t.Cleanup(func() {
		for _, r := range resps {
			r.Body.Close()
		}
		close(release)
	})

	before := liveHeap()
	for i := 0; i < n; i++ {
		resp, err := c.Get(fmt.Sprintf("%s/%d", o.URL, i))
		require.NoError(t, err)
		require.Equal(t, int64(announced), resp.ContentLength)
		resps = append(resps, resp)
	}
	grown := int64(liveHeap()) - int64(before)
	runtime.KeepAlive(resps)
	t.Logf("%d stalled responses announcing %d MiB: heap grew by %.1f MiB", n, announced>>20, float64(grown)/(1<<20))
	assert.Less(t, grown, int64(8<<20), "heap pinned by bodies that never came")
}

// A huge Content-Length with a large cap never panics, and
// nothing past what arrived is buffered.
func TestHugeContentLengthDoesNotPanic(t *testing.T) {
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{"Etag": {`"huge"`}}, ContentLength: 1 << 62,
			Body: io.NopCloser(strings.NewReader("abc")), Request: r}, nil
	})
	ms := NewMemoryStore(0)
	tr := NewTransport(ms, WithBase(base), WithMaxEntrySize(math.MaxInt64))
	require.NotPanics(t, func() {
		resp, err := tr.RoundTrip(httptest.NewRequest(http.MethodGet, "http://huge.test/", nil))
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "abc", string(b))
		require.NoError(t, resp.Body.Close())
	})
	assert.Equal(t, 0, ms.Len(), "a body shorter than announced was stored")

	require.NotPanics(t, func() {
		b := newStoringBody(context.Background(), io.NopCloser(strings.NewReader("abc")), 1<<62, 1<<62,
			func([]byte) { t.Error("committed a body shorter than announced") })
		_, err := b.Read(make([]byte, 10))
		require.NoError(t, err)
		assert.LessOrEqual(t, cap(b.buf), 64<<10, "buffered far past what arrived")
		_, _ = io.ReadAll(b)
		require.NoError(t, b.Close())
	})
}

// chunkedReader hands out data in reads of at most step bytes.
type stepReader struct {
	data []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.data)
	r.data = r.data[n:]
	return n, nil
}

// What a store is handed holds no more memory than its length
// says: exactly the announced length, and within 10% for chunked bodies.
func TestCommittedBodyCapacity(t *testing.T) {
	for _, size := range []int{1, 511, 1000, 4097, 40_001, 65_537, 100_003, 1<<20 + 1} {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d/known=%v", size, known), func(t *testing.T) {
				data := bytes.Repeat([]byte("x"), size)
				cl := int64(-1)
				if known {
					cl = int64(size)
				}
				var got []byte
				b := newStoringBody(context.Background(), io.NopCloser(&stepReader{data: data, step: 1000}), cl, 16<<20,
					func(body []byte) { got = body })
				_, err := io.Copy(io.Discard, b)
				require.NoError(t, err)
				require.NoError(t, b.Close())
				require.Equal(t, data, got)
				if known {
					assert.Equal(t, size, cap(got), "capacity differs from the announced length")
				} else {
					assert.LessOrEqual(t, cap(got), size+size/10, "more than 10%% slack kept")
				}
			})
		}
	}
}

// A MemoryStore's bound holds within 10% of the live heap it
// really costs, with chunked bodies whose buffers grew by doubling.
func TestMemoryStoreBoundHoldsOnHeap(t *testing.T) {
	tests := []struct {
		name        string
		bound, size int
	}{
		{"64MiB of 33KiB bodies", 64 << 20, 33<<10 + 7},
		{"8MiB of 2KiB bodies", 8 << 20, 2<<10 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("0123456789abcdef"), tt.size/16+1)[:tt.size]
			// Not a recordingOrigin: what it records would count as heap.
			o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("ETag", `"`+r.URL.Path+`"`)
				w.Header().Set("Content-Type", "application/octet-stream")
				_, _ = w.Write(body[:1])
				w.(http.Flusher).Flush() // so the body is chunked
				_, _ = w.Write(body[1:])
			}))
			t.Cleanup(o.Close)
			c := &http.Client{Transport: nil}
			before := liveHeap()
			ms := NewMemoryStore(int64(tt.bound))
			c.Transport = NewTransport(ms, WithBase(ownTransport(t)))
			n := 3 * tt.bound / 2 / tt.size
			for i := 0; i < n; i++ {
				resp, got := fetch(t, c, fmt.Sprintf("%s/r/%d", o.URL, i))
				require.Equal(t, -1, int(resp.ContentLength), "the origin's body is not chunked")
				require.Len(t, got, tt.size)
			}
			grown := int64(liveHeap()) - int64(before)
			entries, size := ms.Len(), ms.Size()
			runtime.KeepAlive(ms)
			t.Logf("bound %d MiB: %d entries, %.2f MiB accounted, heap grew %.2f MiB (%.3f x bound)",
				tt.bound>>20, entries, float64(size)/(1<<20), float64(grown)/(1<<20), float64(grown)/float64(tt.bound))
			require.Greater(t, n, entries, "the store was not filled past its bound")
			assert.LessOrEqual(t, grown, int64(tt.bound)*11/10, "the store holds more memory than its bound")
			assert.GreaterOrEqual(t, grown, int64(tt.bound)*8/10, "the store's accounting is far above the memory it holds")
		})
	}
}

// Closing the body while another goroutine reads it is no data
// race, and Close does not wait for the blocked Read.
func TestCloseWhileReadingIsRaceFree(t *testing.T) {
	pr, pw := io.Pipe()
	b := newStoringBody(context.Background(), pr, -1, 1<<20, func([]byte) { t.Error("an unfinished body was committed") })
	b.remainderWait = 10 * time.Millisecond
	readErr := make(chan error, 1)
	go func() {
		p := make([]byte, 64)
		for {
			if _, err := b.Read(p); err != nil {
				readErr <- err
				return
			}
		}
	}()
	// Write returns once the reader has consumed the bytes; the reader then
	// records them and blocks in its next Read, while Close runs here.
	_, err := pw.Write([]byte("some bytes of a slow body"))
	require.NoError(t, err)
	withinBound(t, "Close", func() { _ = b.Close() })
	require.Error(t, <-readErr)
	_, err = pw.Write([]byte("more"))
	assert.ErrorIs(t, err, io.ErrClosedPipe, "the underlying body was not closed")
}

// jsonOrigin serves a JSON document with an ETag, answers 304 to a matching
// If-None-Match, and calls hold (if set) after the value was flushed.
func jsonOrigin(t *testing.T, chunked bool, trailing string, hold func()) *recordingOrigin {
	return newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		const etag = `"doc-1"`
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		doc := `{"name":"etagcache","stars":42}` + trailing
		if !chunked {
			w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
		}
		_, _ = io.WriteString(w, doc)
		w.(http.Flusher).Flush()
		if hold != nil {
			hold()
		}
	})
}

// A caller that decodes JSON and closes stops just before EOF;
// the body is stored all the same and the next poll gets a 304.
func TestDecodeThenCloseStores(t *testing.T) {
	tests := []struct {
		name     string
		chunked  bool
		trailing string
	}{
		// json.Encoder's newline; the final chunk only follows when the
		// handler returns, after the client decoded the value.
		{"chunked, terminator not yet read", true, "\n"},
		// The decoder reads 512 bytes and stops: the rest is left unread.
		{"content-length, trailing whitespace", false, strings.Repeat(" ", 1500) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unhold := func() { once.Do(func() { close(release) }) }
			o := jsonOrigin(t, tt.chunked, tt.trailing, func() { <-release })
			t.Cleanup(unhold)
			ms := NewMemoryStore(0)
			tr := NewTransport(ms, WithBase(ownTransport(t)))

			resp, err := tr.Client().Get(o.URL + "/doc")
			require.NoError(t, err)
			var v struct {
				Name  string
				Stars int
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
			assert.Equal(t, 42, v.Stars)
			unhold()
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 1, ms.Len(), "a decoded body was not stored")

			resp, err = tr.Client().Get(o.URL + "/doc")
			require.NoError(t, err)
			v.Stars = 0
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
			require.NoError(t, resp.Body.Close())
			assert.Equal(t, 42, v.Stars)
			assert.Equal(t, `"doc-1"`, o.last().Get("If-None-Match"), "the second poll was not conditional")
			assert.Equal(t, int64(1), tr.Stats().Revalidated, "the second poll was not answered by a 304")
		})
	}
}

// countingBody counts the bytes read from it.
type countingBody struct {
	r      io.Reader
	n      atomic.Int64
	closed atomic.Bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { c.closed.Store(true); return nil }

// stallBody is a body whose Reads block until it is closed.
type stallBody struct {
	entered chan struct{} // closed when the first Read begins
	stop    chan struct{}
	once    sync.Once
	onceIn  sync.Once
}

func newStallBody() *stallBody {
	return &stallBody{entered: make(chan struct{}), stop: make(chan struct{})}
}

func (s *stallBody) Read([]byte) (int, error) {
	s.onceIn.Do(func() { close(s.entered) })
	<-s.stop
	return 0, errors.New("stallBody: closed")
}

func (s *stallBody) Close() error { s.once.Do(func() { close(s.stop) }); return nil }

func (s *stallBody) readStarted() bool {
	select {
	case <-s.entered:
		return true
	default:
		return false
	}
}

// The remainder read on Close is bounded in bytes, in time and
// by the request's context, and leaves no goroutine behind.
func TestCloseRemainderIsBounded(t *testing.T) {
	big := strings.Repeat("z", 1<<20)
	noCommit := func(t *testing.T) func([]byte) {
		return func([]byte) { t.Error("committed") }
	}

	t.Run("known remainder over the bound is not read", func(t *testing.T) {
		cb := &countingBody{r: strings.NewReader(big)}
		b := newStoringBody(context.Background(), cb, int64(len(big)), 16<<20, noCommit(t))
		_, err := io.ReadFull(b, make([]byte, 100))
		require.NoError(t, err)
		require.NoError(t, b.Close())
		assert.Equal(t, int64(100), cb.n.Load(), "read past the bound on Close")
		assert.True(t, cb.closed.Load())
	})
	t.Run("unknown remainder stops at the bound", func(t *testing.T) {
		cb := &countingBody{r: strings.NewReader(big)}
		b := newStoringBody(context.Background(), cb, -1, 16<<20, noCommit(t))
		_, err := io.ReadFull(b, make([]byte, 100))
		require.NoError(t, err)
		require.NoError(t, b.Close())
		assert.LessOrEqual(t, cb.n.Load(), int64(100+maxRemainder+1), "read past the bound on Close")
		assert.True(t, cb.closed.Load())
	})
	t.Run("small known remainder is read and committed", func(t *testing.T) {
		var got []byte
		body := big[:3000]
		b := newStoringBody(context.Background(), io.NopCloser(strings.NewReader(body)), int64(len(body)), 16<<20,
			func(p []byte) { got = p })
		_, err := io.ReadFull(b, make([]byte, 100))
		require.NoError(t, err)
		require.NoError(t, b.Close())
		assert.Equal(t, body, string(got))
	})
	t.Run("a stalled remainder returns within the bound", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		sb := newStallBody()
		b := newStoringBody(context.Background(), sb, -1, 16<<20, noCommit(t))
		b.remainderWait = 20 * time.Millisecond
		withinBound(t, "Close", func() { _ = b.Close() })
		assert.True(t, sb.readStarted(), "the remainder was not tried")
		assert.LessOrEqual(t, runtime.NumGoroutine(), baseline, "Close left a goroutine behind")
	})
	t.Run("a cancelled context stops it", func(t *testing.T) {
		baseline := runtime.NumGoroutine()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sb := newStallBody()
		b := newStoringBody(ctx, sb, -1, 16<<20, noCommit(t))
		b.remainderWait = time.Hour
		canceller := make(chan struct{})
		go func() {
			defer close(canceller)
			select {
			case <-sb.entered:
				cancel()
			case <-ctx.Done():
			}
		}()
		withinBound(t, "Close", func() { _ = b.Close() })
		assert.True(t, sb.readStarted(), "the remainder was not tried")
		cancel()
		<-canceller
		assert.LessOrEqual(t, runtime.NumGoroutine(), baseline, "Close left a goroutine behind")
	})
	t.Run("a context cancelled before Close reads nothing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		sb := newStallBody()
		b := newStoringBody(ctx, sb, -1, 16<<20, noCommit(t))
		b.remainderWait = time.Hour
		withinBound(t, "Close", func() { _ = b.Close() })
		assert.False(t, sb.readStarted(), "read a remainder for a cancelled request")
	})
	t.Run("a stalled origin through the transport", func(t *testing.T) {
		release := make(chan struct{})
		o := jsonOrigin(t, true, "\n", func() { <-release })
		t.Cleanup(func() { close(release) }) // before the origin's Close, which waits for the handler
		ms := NewMemoryStore(0)
		resp, err := NewTransport(ms, WithBase(ownTransport(t))).Client().Get(o.URL)
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(new(any)))
		withinBound(t, "Close", func() { _ = resp.Body.Close() })
		assert.Equal(t, 0, ms.Len(), "stored a body whose end never came")
	})
}

// MemoryStore's accounting of an entry is within 10% of the live
// heap the entry costs, whatever the size of its header.
func TestMemoryStoreEntrySizeMatchesHeap(t *testing.T) {
	for _, fields := range []int{1, 3, 8, 9, 20, 40} {
		t.Run(strconv.Itoa(fields)+" fields", func(t *testing.T) {
			const n = 4000
			before := liveHeap()
			ms := NewMemoryStore(1 << 40)
			for i := 0; i < n; i++ {
				h := make(http.Header, fields)
				for f := 0; f < fields; f++ {
					h[fmt.Sprintf("X-Field-%d", f)] = []string{fmt.Sprintf("value-%d", i)}
				}
				e := &Entry{Status: 200, Header: h, Body: make([]byte, 100), VaryDigest: make([]byte, 32),
					RequestTime: time.Now(), ResponseTime: time.Now()}
				require.NoError(t, ms.Put(context.Background(), fmt.Sprintf("http://127.0.0.1:12345/r/%d", i), "", e))
			}
			onHeap := float64(int64(liveHeap()) - int64(before))
			accounted := float64(ms.Size())
			runtime.KeepAlive(ms)
			t.Logf("%d fields: %.0f B/entry on the heap, %.0f accounted", fields, onHeap/n, accounted/n)
			assert.InEpsilon(t, onHeap, accounted, 0.10)
		})
	}
}

// BenchmarkStoringBody measures what the body wrapper adds to a miss:
// passing a body of each size through to EOF, keeping a copy, and Close.
func BenchmarkStoringBody(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		for _, known := range []bool{true, false} {
			b.Run(fmt.Sprintf("%dKiB/known=%v", size>>10, known), func(b *testing.B) {
				data := bytes.Repeat([]byte("x"), size)
				cl := int64(-1)
				if known {
					cl = int64(size)
				}
				r := bytes.NewReader(data)
				p := make([]byte, 4<<10) // what a bufio-backed body hands out per Read
				var kept int
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					r.Reset(data)
					sb := newStoringBody(context.Background(), io.NopCloser(r), cl, 16<<20, func(body []byte) { kept += len(body) })
					for {
						if _, err := sb.Read(p); err != nil {
							break
						}
					}
					_ = sb.Close()
				}
				if kept == 0 {
					b.Fatal("nothing kept")
				}
			})
		}
	}
}

// The CRC-32C a storing body keeps for a checksumming store is that of the
// body committed: for known and unknown lengths, bodies read in many small
// reads, and a remainder read by Close.
func TestStoringBodyChecksum(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdefghij"), 7000) // 140,000 bytes
	for _, known := range []bool{true, false} {
		for _, stopAt := range []int{len(data), len(data) - 100} {
			t.Run(fmt.Sprintf("known=%v/closed-%d-before-end", known, len(data)-stopAt), func(t *testing.T) {
				cl := int64(-1)
				if known {
					cl = int64(len(data))
				}
				var got []byte
				var b *storingBody
				var sum uint32
				b = newStoringBody(context.Background(), io.NopCloser(&stepReader{data: data, step: 999}), cl, 16<<20,
					func(body []byte) { got, sum = body, b.checksum() })
				b.withSum = true
				_, err := io.ReadFull(b, make([]byte, stopAt))
				require.NoError(t, err)
				if stopAt == len(data) {
					_, err = b.Read(make([]byte, 1))
					require.ErrorIs(t, err, io.EOF)
				}
				require.NoError(t, b.Close())
				require.Equal(t, data, got)
				assert.Equal(t, crc32.Checksum(data, castagnoli), sum)
			})
		}
	}
}
