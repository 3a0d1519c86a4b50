package redisstore

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTwoWorkersShareValidators: after worker A fetched a resource, worker
// B's very first request for it is already conditional, the origin answers
// 304, and B serves the body it read from Redis. Then a change at the
// origin reaches both.
func TestTwoWorkersShareValidators(t *testing.T) {
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			o := newOrigin(t)
			body := bytes.Repeat([]byte("shared document "), 4096) // 64 KiB
			o.Set("/doc", body)
			c := top.client(t)
			p := testPrefix(t)
			a, b := newWorker(t, c, WithPrefix(p)), newWorker(t, c, WithPrefix(p))

			g := a.mustGet(t, o.URL+"/doc")
			require.Equal(t, body, g.Body)
			require.Equal(t, int64(1), a.t.Stats().Stored)

			g = b.mustGet(t, o.URL+"/doc")
			require.Equal(t, body, g.Body)
			log := o.Log()
			require.Len(t, log, 2)
			assert.Equal(t, etagOf(body), log[1].IfNoneMatch, "B's first request is conditional")
			assert.Equal(t, 304, log[1].Status)
			assert.Equal(t, int64(1), b.t.Stats().Revalidated)
			assert.Zero(t, b.t.Stats().Stored)
			n, size := b.store.LocalStats()
			assert.Equal(t, 1, n, "B read the body from Redis into its local layer")
			assert.Equal(t, int64(len(body)), size)

			// The resource changes; B fetches it, and A's next request is
			// conditional on B's version.
			v2 := []byte("version two")
			o.Set("/doc", v2)
			require.Equal(t, v2, b.mustGet(t, o.URL+"/doc").Body)
			require.Equal(t, v2, a.mustGet(t, o.URL+"/doc").Body)
			log = o.Log()
			require.Len(t, log, 4)
			assert.Equal(t, etagOf(v2), log[3].IfNoneMatch)
			assert.Equal(t, 304, log[3].Status)
		})
	}
}

// redisBytes returns the bytes Redis has read and written on the network so
// far, summed over every master.
func redisBytes(t testing.TB, top topology, c redis.UniversalClient) int64 {
	t.Helper()
	var total int64
	err := top.each(context.Background(), c, func(ctx context.Context, n *redis.Client) error {
		info, err := n.Info(ctx, "stats").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\r\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "total_net_input_bytes" || k == "total_net_output_bytes") {
				x, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return err
				}
				total += x
			}
		}
		return nil
	})
	require.NoError(t, err)
	return total
}

// bytesPerWarm304 has worker A fetch a resource of size bytes and worker B
// warm up on it, then returns the bytes Redis moved per revalidation over
// n more of B's requests (less what measuring costs: the INFO calls).
func bytesPerWarm304(t testing.TB, top topology, c redis.UniversalClient, o *origin, size, n int, opts ...Option) float64 {
	t.Helper()
	path := "/warm/" + strconv.Itoa(size)
	body := bytes.Repeat([]byte{byte(size)}, size)
	copy(body, path)
	o.Set(path, body)
	a, b := newWorker(t, c, opts...), newWorker(t, c, opts...)
	a.mustGet(t, o.URL+path)
	b.mustGet(t, o.URL+path)
	info0 := redisBytes(t, top, c)
	info1 := redisBytes(t, top, c) // what one measurement costs
	for range n {
		g := b.mustGet(t, o.URL+path)
		require.Equal(t, body, g.Body)
	}
	info2 := redisBytes(t, top, c)
	require.Equal(t, int64(n+1), b.t.Stats().Revalidated)
	return float64((info2-info1)-(info1-info0)) / float64(n)
}

// TestWarmRevalidationBytes: with the local layer, a warm worker's 304 moves
// at most 4 KiB between it and Redis at 1 MiB bodies (measured with Redis'
// own INFO byte counters); without it, the whole body every time.
func TestWarmRevalidationBytes(t *testing.T) {
	requireRedis(t)
	port, err := freePort()
	require.NoError(t, err)
	srv, err := startRedis(t.TempDir(), port) // its own, so no other test's traffic is counted
	require.NoError(t, err)
	t.Cleanup(srv.Kill)
	c := newSingleClient(t, srv.Addr, calmTimeout)
	top := topology{name: "single", each: eachSingle}
	o := newOrigin(t)

	for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
		per := bytesPerWarm304(t, top, c, o, size, 50)
		t.Logf("warm 304, %7d-byte body: %6.0f bytes between worker and Redis", size, per)
		assert.LessOrEqual(t, per, 4096.0, "size %d", size)
		assert.Greater(t, per, 0.0, "the header record is read")
	}
	per := bytesPerWarm304(t, top, c, o, 1<<20, 50, WithTTL(time.Hour), WithPrefix("ttl:"))
	t.Logf("warm 304, 1 MiB body, with a TTL: %.0f bytes", per)
	assert.LessOrEqual(t, per, 4096.0)
	per = bytesPerWarm304(t, top, c, o, 1<<20, 10, WithLocalCache(-1), WithPrefix("nolocal:"))
	t.Logf("warm 304, 1 MiB body, local layer off: %.0f bytes", per)
	assert.Greater(t, per, float64(1<<20), "without the local layer the body crosses every time")
}

// TestPutDoesNotResendHeldBody: a Put of a body Redis already holds (another
// resource, another variant, another worker) refreshes it instead of
// sending it again, with or without a TTL.
func TestPutDoesNotResendHeldBody(t *testing.T) {
	requireRedis(t)
	port, err := freePort()
	require.NoError(t, err)
	srv, err := startRedis(t.TempDir(), port)
	require.NoError(t, err)
	t.Cleanup(srv.Kill)
	c := newSingleClient(t, srv.Addr, calmTimeout)
	top := topology{name: "single", each: eachSingle}
	ctx := context.Background()
	body := bytes.Repeat([]byte("held body "), 6554) // 64 KiB
	for _, opts := range [][]Option{{WithPrefix("a:")}, {WithPrefix("b:"), WithTTL(time.Hour)}} {
		require.NoError(t, New(c, opts...).Put(ctx, "http://x/one", "", testEntry(`"h"`, body)))
		before := redisBytes(t, top, c)
		require.NoError(t, New(c, opts...).Put(ctx, "http://x/two", "u1", testEntry(`"h"`, body)))
		moved := redisBytes(t, top, c) - before
		assert.Less(t, moved, int64(len(body)/4), "bytes moved by the second Put")
		e, err := New(c, append(opts, WithLocalCache(-1))...).Get(ctx, "http://x/two", "u1")
		require.NoError(t, err)
		require.Equal(t, body, e.Body)
	}
}
