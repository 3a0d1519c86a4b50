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
			resp, first, err := c.do(context.Background(), "k", 1<<20, fn)
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

func TestCoalescerWaiterLeavesOthersStay(t *testing.T) {
	var c coalescer
	release := make(chan struct{})
	fnCtx := make(chan context.Context, 1)
	fn := func(ctx context.Context) (*http.Response, error) {
		fnCtx <- ctx
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok"))}, nil
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { _, _, err := c.do(ctx1, "k", 1<<20, fn); done1 <- err }()
	waitFor(t, "first waiter", func() bool { return c.waiting("k") == 1 })
	done2 := make(chan string, 1)
	go func() {
		resp, _, err := c.do(context.Background(), "k", 1<<20, fn)
		if err != nil {
			done2 <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done2 <- string(b)
	}()
	waitFor(t, "second waiter", func() bool { return c.waiting("k") == 2 })
	cancel1()
	assert.ErrorIs(t, <-done1, context.Canceled, "the cancelled waiter leaves")
	assert.NoError(t, (<-fnCtx).Err(), "the shared exchange goes on for the other")
	close(release)
	assert.Equal(t, "ok", <-done2)
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
	go func() { _, _, err := c.do(ctx, "k", 1<<20, fn); done <- err }()
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
			resp, _, err := c.do(context.Background(), "k", 5, fn)
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
			resp, _, err := c.do(context.Background(), "k", maxSize, fn)
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
