package etagcache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitFor polls cond until it holds or a generous bound passes; it never
// sleeps for synchronisation, only to give other goroutines the CPU.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// doWith is c.do for a GET under ctx, with an exchange fn whose response
// fits every follower.
func doWith(c *coalescer, ctx context.Context, key string, maxSize int64, fn func(context.Context) (*http.Response, error)) (*http.Response, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://example.test/", nil)
	if err != nil {
		return nil, false, err
	}
	return c.do(req, key, maxSize, func(ctx context.Context) (*http.Response, func(*http.Request) bool, error) {
		resp, err := fn(ctx)
		return resp, nil, err
	})
}

func TestCoalescerSharesOneExchange(t *testing.T) {
	var c coalescer
	var calls atomic.Int32
	const n = 64
	release := make(chan struct{})
	body := strings.Repeat("x", 100<<10)
	fn := func(ctx context.Context) (*http.Response, error) {
		calls.Add(1)
		<-release
		return &http.Response{StatusCode: 200, Header: http.Header{"A": {"1"}}, Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}, nil
	}
	var wg sync.WaitGroup
	var led atomic.Int32
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, first, err := doWith(&c, context.Background(), "k", 1<<20, fn)
			if err != nil {
				errs <- err
				return
			}
			if first {
				led.Add(1)
			}
			resp.Header.Set("A", "mine") // each has its own map
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && string(b) != body {
				err = errors.New("wrong body")
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	waitFor(t, "64 waiters", func() bool { return c.waiting("k") == n })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int32(1), calls.Load())
	assert.Equal(t, int32(1), led.Load())
	assert.Equal(t, 0, c.waiting("k"), "every waiter released the flight")
}

// gatedExchange is an exchange that waits for release (or its context) and
// then answers "ok"; each call's context arrives on ctxs.
func gatedExchange(release <-chan struct{}, ctxs chan<- context.Context) func(context.Context) (*http.Response, error) {
	return func(ctx context.Context) (*http.Response, error) {
		ctxs <- ctx
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}
}

// readAllOf returns what do returned as a body, or the error.
func readAllOf(resp *http.Response, err error) string {
	if err != nil {
		return err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return string(b)
}

func TestCoalescerFollowerLeavesExchangeGoesOn(t *testing.T) {
	var c coalescer
	release := make(chan struct{})
	ctxs := make(chan context.Context, 2)
	fn := gatedExchange(release, ctxs)
	done1 := make(chan string, 1)
	go func() {
		resp, _, err := doWith(&c, context.Background(), "k", 1<<20, fn)
		done1 <- readAllOf(resp, err)
	}()
	waitFor(t, "the leader", func() bool { return c.waiting("k") == 1 })
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { _, _, err := doWith(&c, ctx2, "k", 1<<20, fn); done2 <- err }()
	waitFor(t, "the follower", func() bool { return c.waiting("k") == 2 })
	cancel2()
	assert.ErrorIs(t, <-done2, context.Canceled, "the follower leaves")
	exchange := <-ctxs
	assert.NoError(t, exchange.Err(), "the exchange goes on for the leader")
	close(release)
	assert.Equal(t, "ok", <-done1)
	assert.Empty(t, ctxs, "one exchange")
}

// The leader's goroutine is inside the exchange: when its context ends
// before the header, the exchange ends with it (the leader returns at
// once), and the followers start again among themselves.
func TestCoalescerLeaderLeavesFollowersStartAgain(t *testing.T) {
	var c coalescer
	release := make(chan struct{})
	ctxs := make(chan context.Context, 2)
	fn := gatedExchange(release, ctxs)
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { _, _, err := doWith(&c, ctx1, "k", 1<<20, fn); done1 <- err }()
	first := <-ctxs
	const n = 3
	done := make(chan string, n)
	led := make(chan bool, n)
	for range n {
		go func() {
			resp, l, err := doWith(&c, context.Background(), "k", 1<<20, fn)
			led <- l
			done <- readAllOf(resp, err)
		}()
	}
	waitFor(t, "the followers", func() bool { return c.waiting("k") == n+1 })
	cancel1()
	assert.ErrorIs(t, <-done1, context.Canceled, "the leader returns at its context's end")
	assert.ErrorIs(t, first.Err(), context.Canceled, "its exchange ended with it")
	second := <-ctxs
	waitFor(t, "the followers on the new exchange", func() bool { return c.waiting("k") == n })
	assert.NoError(t, second.Err())
	close(release)
	leaders := 0
	for range n {
		assert.Equal(t, "ok", <-done)
		if <-led {
			leaders++
		}
	}
	assert.Equal(t, 1, leaders, "one of them led the new exchange")
	assert.Empty(t, ctxs, "two exchanges in all")
}

func TestCoalescerAllLeaveCancelsExchange(t *testing.T) {
	var c coalescer
	cancelled := make(chan struct{})
	fn := func(ctx context.Context) (*http.Response, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, _, err := doWith(&c, ctx, "k", 1<<20, fn); done <- err }()
	waitFor(t, "waiter", func() bool { return c.waiting("k") == 1 })
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the exchange went on with nobody waiting")
	}
}

func TestCoalescerOversizeIsNotShared(t *testing.T) {
	var c coalescer
	release := make(chan struct{})
	fn := func(ctx context.Context) (*http.Response, error) {
		<-release
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: 10, Body: io.NopCloser(strings.NewReader("0123456789"))}, nil
	}
	results := make(chan error, 2)
	for range 2 {
		go func() {
			resp, _, err := doWith(&c, context.Background(), "k", 5, fn)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			results <- err
		}()
	}
	waitFor(t, "two waiters", func() bool { return c.waiting("k") == 2 })
	close(release)
	a, b := <-results, <-results
	if a != nil {
		a, b = b, a
	}
	assert.NoError(t, a, "one waiter takes the response")
	assert.ErrorIs(t, b, errNotShared, "the other is told to send its own")
}

// twoWaiters starts two callers on one flight whose body is body, with no
// Content-Length, and returns their responses.
func twoWaiters(t *testing.T, c *coalescer, body string, maxSize int64) (*http.Response, *http.Response) {
	t.Helper()
	release := make(chan struct{})
	fn := func(ctx context.Context) (*http.Response, error) {
		<-release
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1, Body: io.NopCloser(strings.NewReader(body))}, nil
	}
	out := make(chan *http.Response, 2)
	for range 2 {
		go func() {
			resp, _, err := doWith(c, context.Background(), "k", maxSize, fn)
			assert.NoError(t, err)
			out <- resp
		}()
	}
	waitFor(t, "two waiters", func() bool { return c.waiting("k") == 2 })
	close(release)
	return <-out, <-out
}

func TestCoalescerChunkedOverflow(t *testing.T) {
	t.Run("two readers fail", func(t *testing.T) {
		var c coalescer
		a, b := twoWaiters(t, &c, strings.Repeat("z", 100), 10)
		_, err := io.ReadAll(a.Body)
		assert.ErrorIs(t, err, ErrCoalescedBodyTooLarge)
		_, err = io.ReadAll(b.Body)
		assert.ErrorIs(t, err, ErrCoalescedBodyTooLarge)
		a.Body.Close()
		b.Body.Close()
		assert.Equal(t, 0, c.waiting("k"))
	})
	t.Run("the last reader streams on", func(t *testing.T) {
		var c coalescer
		body := strings.Repeat("z", 100)
		a, b := twoWaiters(t, &c, body, 10)
		require.NoError(t, b.Body.Close())
		got, err := io.ReadAll(a.Body)
		require.NoError(t, err)
		assert.Equal(t, body, string(got))
		a.Body.Close()
	})
	t.Run("shared body within the bound", func(t *testing.T) {
		var c coalescer
		body := strings.Repeat("0123456789", 10000)
		a, b := twoWaiters(t, &c, body, 1<<20)
		var wg sync.WaitGroup
		for _, r := range []*http.Response{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := io.ReadAll(iotestHalfReader{r.Body})
				assert.NoError(t, err)
				assert.Equal(t, body, string(got))
				r.Body.Close()
			}()
		}
		wg.Wait()
		assert.Equal(t, 0, c.waiting("k"))
	})
}

// iotestHalfReader reads in small pieces, so readers interleave.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	if len(p) > 777 {
		p = p[:777]
	}
	return h.r.Read(p)
}

// The leader's share predicate picks the followers its response fits; the
// others are told to send their own requests, and a body shared with fewer
// callers than waited is still released when they are done.
func TestCoalescerSharePredicate(t *testing.T) {
	for _, body := range []string{"stored", "streamed"} {
		t.Run(body, func(t *testing.T) {
			var c coalescer
			release := make(chan struct{})
			fnCtx := make(chan context.Context, 1)
			fn := func(ctx context.Context) (*http.Response, func(*http.Request) bool, error) {
				fnCtx <- ctx
				<-release
				resp := &http.Response{StatusCode: 200, Header: http.Header{"A": {"1"}}, ContentLength: -1}
				if body == "stored" {
					resp.Body = newStoredBody([]byte("doc"))
				} else {
					resp.Body = io.NopCloser(strings.NewReader("doc"))
				}
				return resp, func(r *http.Request) bool { return r.Header.Get("Fits") == "yes" }, nil
			}
			type got struct {
				body string
				err  error
			}
			do := func(fits string) got {
				req, _ := http.NewRequest(http.MethodGet, "http://example.test/", nil)
				req.Header.Set("Fits", fits)
				resp, _, err := c.do(req, "k", 1<<20, fn)
				if err != nil {
					return got{err: err}
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				return got{string(b), err}
			}
			results := make(map[string]chan got)
			for _, who := range []string{"leader", "yes", "no"} {
				results[who] = make(chan got, 1)
			}
			go func() { results["leader"] <- do("no") }() // the leader's own request always fits
			waitFor(t, "the leader", func() bool { return c.waiting("k") == 1 })
			go func() { results["yes"] <- do("yes") }()
			go func() { results["no"] <- do("no") }()
			waitFor(t, "the followers", func() bool { return c.waiting("k") == 3 })
			close(release)
			assert.Equal(t, got{body: "doc"}, <-results["leader"])
			assert.Equal(t, got{body: "doc"}, <-results["yes"])
			assert.ErrorIs(t, (<-results["no"]).err, errNotShared)
			ctx := <-fnCtx
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the exchange was not released")
			}
		})
	}
}

// Callers that share a body and whose contexts end leave even if they
// never read again: when all have, the exchange is cancelled.
func TestCoalescerSharersLeaveWithTheirContexts(t *testing.T) {
	var c coalescer
	release := make(chan struct{})
	fnCtx := make(chan context.Context, 1)
	fn := func(ctx context.Context) (*http.Response, error) {
		fnCtx <- ctx
		<-release
		body := newGatedBody(ctx, make(chan struct{}), nil) // stalls until the exchange ends
		return &http.Response{StatusCode: 200, Header: http.Header{}, ContentLength: -1, Body: body}, nil
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	resps := make(chan *http.Response, 2)
	for _, ctx := range []context.Context{ctx1, ctx2} {
		go func() {
			resp, _, err := doWith(&c, ctx, "k", 1<<20, fn)
			assert.NoError(t, err)
			resps <- resp
		}()
		waitFor(t, "a caller", func() bool { return c.waiting("k") >= 1 && len(fnCtx) == 1 })
	}
	waitFor(t, "two callers", func() bool { return c.waiting("k") == 2 })
	close(release)
	a, b := <-resps, <-resps
	exchange := <-fnCtx
	cancel1()
	assert.NoError(t, exchange.Err(), "one caller left, the other holds the exchange")
	cancel2()
	select {
	case <-exchange.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("both callers' contexts ended and the exchange goes on")
	}
	for _, r := range []*http.Response{a, b} {
		_, err := r.Body.Read(make([]byte, 1))
		assert.ErrorIs(t, err, context.Canceled)
		r.Body.Close()
	}
}
