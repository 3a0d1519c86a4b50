package etagcache

// Coalescing at its edges: callers whose contexts end while they read,
// lengths announced and never sent, panics below the cache, callers that
// leave before the header, and what a caller alone pays.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stallOrigin answers every GET in steps the test releases: the header
// (with Content-Length when length >= 0) once header is closed, then first,
// flushed, then rest once rest is closed. Each wait also ends with the
// request, so that the server can shut down.
type stallOrigin struct {
	*httptest.Server
	header, rest chan struct{}
	openHeader   func()
	openRest     func()
	requests     atomic.Int64
	inside       atomic.Int64 // requests waiting for their header
}

func newStallOrigin(t *testing.T, length int64, first, rest string) *stallOrigin {
	o := &stallOrigin{header: make(chan struct{}), rest: make(chan struct{})}
	o.openHeader = sync.OnceFunc(func() { close(o.header) })
	o.openRest = sync.OnceFunc(func() { close(o.rest) })
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		o.inside.Add(1)
		select {
		case <-o.header:
			o.inside.Add(-1)
		case <-r.Context().Done():
			o.inside.Add(-1)
			return
		}
		w.Header().Set("ETag", `"stall"`)
		if length >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, first)
		http.NewResponseController(w).Flush()
		select {
		case <-o.rest:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, rest)
	}))
	t.Cleanup(o.Close)
	t.Cleanup(func() { o.openHeader(); o.openRest() }) // before Close
	return o
}

// readResult is what one Read returned.
type readResult struct {
	n   int
	err error
}

// readSoon starts a Read of body and returns where its result arrives.
func readSoon(body io.Reader) <-chan readResult {
	c := make(chan readResult, 1)
	go func() {
		n, err := body.Read(make([]byte, 1<<10))
		c <- readResult{n, err}
	}()
	return c
}

// readResultOf waits for a Read's result, with a generous bound that only a
// Read that never returns reaches.
func readResultOf(t *testing.T, c <-chan readResult, what string) readResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Read still blocked", what)
		return readResult{}
	}
}

func getWith(ctx context.Context, tr *Transport, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return tr.RoundTrip(req)
}

// A caller alone in its flight reads the origin's body as it is; its Read
// still ends with its context, while the origin stalls.
func TestCoalescedLoneReadEndsWithItsContext(t *testing.T) {
	o := newStallOrigin(t, -1, strings.Repeat("a", 1<<10), "rest")
	o.openHeader()
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := getWith(ctx, tr, o.URL)
	require.NoError(t, err)
	_, err = io.ReadFull(resp.Body, make([]byte, 1<<10))
	require.NoError(t, err)
	read := readSoon(resp.Body)
	cancel()
	r := readResultOf(t, read, "a lone caller whose context ended")
	assert.ErrorIs(t, r.err, context.Canceled)
	resp.Body.Close()
	goroutinesBack(t, base, tr)
}

// Callers that share a body each stop reading when their own context ends;
// the others read on to the end, from the one origin exchange.
func TestCoalescedSharedReadEndsWithItsContext(t *testing.T) {
	first := strings.Repeat("b", 1<<10)
	o := newStallOrigin(t, -1, first, "rest")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	type got struct {
		resp *http.Response
		err  error
	}
	a, b := make(chan got, 1), make(chan got, 1)
	go func() { r, err := getWith(ctxA, tr, o.URL); a <- got{r, err} }()
	waitFor(t, "the first caller at the origin", func() bool { return o.inside.Load() == 1 })
	go func() { r, err := getWith(context.Background(), tr, o.URL); b <- got{r, err} }()
	waitFor(t, "two callers on one exchange", func() bool { return tr.fx.flights.waitingAll() == 2 })
	o.openHeader()
	ga, gb := <-a, <-b
	require.NoError(t, ga.err)
	require.NoError(t, gb.err)
	for _, r := range []*http.Response{ga.resp, gb.resp} {
		_, err := io.ReadFull(r.Body, make([]byte, len(first)))
		require.NoError(t, err)
	}
	readA := readSoon(ga.resp.Body)
	cancelA()
	ra := readResultOf(t, readA, "a sharing caller whose context ended")
	assert.ErrorIs(t, ra.err, context.Canceled)
	o.openRest()
	rest, err := io.ReadAll(gb.resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "rest", string(rest), "the other caller reads on")
	ga.resp.Body.Close()
	gb.resp.Body.Close()
	assert.Equal(t, int64(1), o.requests.Load())
	goroutinesBack(t, base, tr)
}

// pairsOnStalledBodies starts two callers on each of urls and returns their
// responses once every header has arrived; the bodies stall.
func pairsOnStalledBodies(t *testing.T, tr *Transport, o *stallOrigin, urls []string) []*http.Response {
	t.Helper()
	out := make(chan *http.Response, 2*len(urls))
	for _, u := range urls {
		before := tr.fx.flights.waitingAll()
		for range 2 {
			go func() {
				resp, err := getWith(context.Background(), tr, u)
				assert.NoError(t, err)
				out <- resp
			}()
		}
		waitFor(t, "two callers on "+u, func() bool { return tr.fx.flights.waitingAll() == before+2 })
	}
	o.openHeader()
	var resps []*http.Response
	for range 2 * len(urls) {
		if r := <-out; r != nil {
			resps = append(resps, r)
		}
	}
	require.Len(t, resps, 2*len(urls))
	return resps
}

// A shared body's buffer grows with the bytes that arrive, not with the
// length announced: stalled origins that announce 16 MiB pin no 16 MiB.
func TestCoalescedBufferFollowsArrivingBytes(t *testing.T) {
	o := newStallOrigin(t, 16<<20, "", "")
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true))
	var urls []string
	for i := range 4 {
		urls = append(urls, o.URL+"/"+strconv.Itoa(i))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resps := pairsOnStalledBodies(t, tr, o, urls)
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	assert.Less(t, grew, int64(8<<20), "4 shared bodies of which nothing arrived hold %d bytes", grew)
	for _, r := range resps {
		r.Body.Close()
	}
	goroutinesBack(t, base, tr)
}

// gatedBody is a body that sends nothing until gate closes, and ends with
// the request or its own Close.
type gatedBody struct {
	ctx    context.Context
	gate   <-chan struct{}
	then   func() (int, error) // what Read does once gate is open
	closed chan struct{}
	once   sync.Once
}

func newGatedBody(ctx context.Context, gate <-chan struct{}, then func() (int, error)) *gatedBody {
	return &gatedBody{ctx: ctx, gate: gate, then: then, closed: make(chan struct{})}
}

func (b *gatedBody) Read(p []byte) (int, error) {
	select {
	case <-b.gate:
		return b.then()
	case <-b.closed:
		return 0, errors.New("read on closed body")
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
}

func (b *gatedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

// childEnv names the test that a child process of the test binary runs.
const childEnv = "ETAGCACHE_TEST_CHILD"

// inChild runs f in a child process, the test binary running only this
// test: what crashes the child then fails this test instead of ending the
// whole run.
func inChild(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		f(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "the child process failed:\n%s", out)
	require.Contains(t, string(out), "--- PASS: "+t.Name())
}

// twoOnOneFlight starts two GETs of url at once and, once both wait on one
// flight, opens gate; it returns what each RoundTrip returned.
func twoOnOneFlight(t *testing.T, tr *Transport, url string, gate chan struct{}) ([]*http.Response, []error) {
	t.Helper()
	type got struct {
		resp *http.Response
		err  error
	}
	out := make(chan got, 2)
	for range 2 {
		go func() { r, err := getWith(context.Background(), tr, url); out <- got{r, err} }()
	}
	waitFor(t, "two callers on one flight", func() bool { return tr.fx.flights.waitingAll() == 2 })
	close(gate)
	var resps []*http.Response
	var errs []error
	for range 2 {
		g := <-out
		resps, errs = append(resps, g.resp), append(errs, g.err)
	}
	return resps, errs
}

// With no bound on the entry size, a length of 2^50 announced is only
// announced: nothing is allocated for it.
func TestCoalescedHugeAnnouncedLength(t *testing.T) {
	inChild(t, func(t *testing.T) {
		gate := make(chan struct{})
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-gate
			body := newGatedBody(r.Context(), make(chan struct{}), nil)
			return &http.Response{StatusCode: 200, Header: http.Header{"Etag": {`"huge"`}}, ContentLength: 1 << 50, Body: body, Request: r}, nil
		})
		tr := NewTransport(NewMemoryStore(0), WithBase(base), WithFreshness(true), WithMaxEntrySize(-1))
		resps, errs := twoOnOneFlight(t, tr, "http://example.test/huge", gate)
		for i := range resps {
			require.NoError(t, errs[i])
			require.NoError(t, resps[i].Body.Close())
		}
		waitFor(t, "the flight released", func() bool { return tr.fx.flights.waitingAll() == 0 })
	})
}

// A panic below the cache becomes an error for every caller that shared
// the exchange, in the header or in the body; the process goes on.
func TestCoalescedPanicBelowTheCache(t *testing.T) {
	inChild(t, func(t *testing.T) {
		t.Run("exchange", func(t *testing.T) {
			gate := make(chan struct{})
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				<-gate
				panic("the base transport broke")
			})
			tr := NewTransport(NewMemoryStore(0), WithBase(base), WithFreshness(true))
			_, errs := twoOnOneFlight(t, tr, "http://example.test/panic", gate)
			for _, err := range errs {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "the base transport broke")
			}
		})
		t.Run("body", func(t *testing.T) {
			gate, bodyGate := make(chan struct{}), make(chan struct{})
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				<-gate
				body := newGatedBody(r.Context(), bodyGate, func() (int, error) { panic("the body broke") })
				return &http.Response{StatusCode: 200, Header: http.Header{"Etag": {`"p"`}}, ContentLength: -1, Body: body, Request: r}, nil
			})
			tr := NewTransport(NewMemoryStore(0), WithBase(base), WithFreshness(true))
			resps, errs := twoOnOneFlight(t, tr, "http://example.test/panic-body", gate)
			close(bodyGate)
			for i := range resps {
				require.NoError(t, errs[i])
				_, err := io.ReadAll(resps[i].Body)
				require.Error(t, err)
				assert.Contains(t, err.Error(), "the body broke")
				resps[i].Body.Close()
			}
		})
	})
}

// A caller that left before the header arrived is no reader of the body:
// the one left streams a body larger than the maximum entry size to its
// end, as it would alone.
func TestCoalescedLeaverBeforeHeaderIsNoReader(t *testing.T) {
	body := strings.Repeat("c", 4096)
	o := newStallOrigin(t, -1, body, "")
	o.openRest()
	base := runtime.NumGoroutine()
	tr := newFreshTransport(t, newFakeClock(), WithFreshness(true), WithMaxEntrySize(768))
	stays := make(chan string, 1)
	go func() {
		resp, err := getWith(context.Background(), tr, o.URL)
		if !assert.NoError(t, err) {
			stays <- ""
			return
		}
		b, err := io.ReadAll(resp.Body)
		assert.NoError(t, err)
		resp.Body.Close()
		stays <- string(b)
	}()
	waitFor(t, "the first caller at the origin", func() bool { return o.inside.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	leaves := make(chan error, 1)
	go func() { _, err := getWith(ctx, tr, o.URL); leaves <- err }()
	waitFor(t, "the second caller on the flight", func() bool { return tr.fx.flights.waitingAll() == 2 })
	cancel()
	assert.ErrorIs(t, <-leaves, context.Canceled)
	waitFor(t, "the second caller gone", func() bool { return tr.fx.flights.waitingAll() == 1 })
	o.openHeader()
	assert.Equal(t, body, <-stays)
	assert.Equal(t, int64(1), o.requests.Load())
	goroutinesBack(t, base, tr)
}

// A revalidation with nobody to share it costs about what it costs with
// coalescing off: it runs in the caller's goroutine, and allocates the
// flight, the exchange's context (two objects) and the watch on the
// caller's context (two), the request under that context, and the flight
// key (one): seven objects.
func TestCoalescingLoneRevalidationAllocations(t *testing.T) {
	allocs := map[bool]float64{}
	for _, on := range []bool{false, true} {
		inCaller := false
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{"Etag": {`"a"`}, "Cache-Control": {"no-cache"}}
			if r.Header.Get("If-None-Match") == `"a"` {
				return &http.Response{StatusCode: 304, Header: h, Body: http.NoBody, Request: r}, nil
			}
			inCaller = strings.Contains(string(debug.Stack()), "TestCoalescingLoneRevalidationAllocations")
			return &http.Response{StatusCode: 200, Header: h, ContentLength: 4, Body: io.NopCloser(strings.NewReader("body")), Request: r}, nil
		})
		tr := NewTransport(NewMemoryStore(0), WithBase(base), WithFreshness(true), WithCoalescing(on))
		ctx, cancel := context.WithCancel(context.Background()) // a context that can end, as a server's can
		defer cancel()
		req := httptest.NewRequest(http.MethodGet, "http://example.test/doc", nil).WithContext(ctx)
		for range 2 {
			resp, err := tr.RoundTrip(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		assert.True(t, inCaller, "coalescing %v: the exchange ran in another goroutine than the caller's", on)
		allocs[on] = testing.AllocsPerRun(200, func() {
			resp, err := tr.RoundTrip(req)
			if err != nil || ResultOf(resp) != ResultRevalidated {
				t.Fatalf("not a revalidation: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		})
	}
	t.Logf("allocations per lone revalidation, coalescing off and on: %v, %v", allocs[false], allocs[true])
	assert.LessOrEqual(t, allocs[true]-allocs[false], 7.0, "coalescing costs a caller alone too much: %v", allocs)
}
