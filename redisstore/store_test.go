package redisstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

func testEntry(etag string, body []byte) *etagcache.Entry {
	return &etagcache.Entry{
		Status:       http.StatusOK,
		Header:       http.Header{"Etag": {etag}, "Content-Type": {"text/plain"}},
		Body:         body,
		VaryDigest:   bytes.Repeat([]byte{7}, 32),
		RequestTime:  time.Unix(1700000000, 0),
		ResponseTime: time.Unix(1700000001, 0),
	}
}

func sameEntry(t *testing.T, want, got *etagcache.Entry) {
	t.Helper()
	require.NotNil(t, got)
	assert.Equal(t, want.Status, got.Status)
	assert.Equal(t, want.Header, got.Header)
	assert.Equal(t, want.Body, got.Body)
	assert.Equal(t, want.VaryDigest, got.VaryDigest)
	assert.True(t, want.RequestTime.Equal(got.RequestTime))
	assert.True(t, want.ResponseTime.Equal(got.ResponseTime))
}

func TestStoreRoundTrip(t *testing.T) {
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			ctx := context.Background()
			c := top.client(t)
			p := testPrefix(t)
			w := New(c, WithPrefix(p))
			r := New(c, WithPrefix(p), WithLocalCache(-1)) // reads every body from Redis

			_, err := r.Get(ctx, "http://x/a", "")
			require.ErrorIs(t, err, etagcache.ErrNotFound)

			a := testEntry(`"a"`, bytes.Repeat([]byte("body a "), 2000))
			b := testEntry(`"b"`, []byte("short body b"))
			empty := testEntry(`"e"`, nil)
			require.NoError(t, w.Put(ctx, "http://x/a", "", a))
			require.NoError(t, w.Put(ctx, "http://x/a", "u1234", b))
			require.NoError(t, w.Put(ctx, "http://x/empty", "", empty))
			for _, st := range []*Store{w, r} {
				e, err := st.Get(ctx, "http://x/a", "")
				require.NoError(t, err)
				sameEntry(t, a, e)
				e, err = st.Get(ctx, "http://x/a", "u1234")
				require.NoError(t, err)
				sameEntry(t, b, e)
				e, err = st.Get(ctx, "http://x/empty", "")
				require.NoError(t, err)
				sameEntry(t, empty, e)
			}
			n, _ := r.LocalStats()
			assert.Zero(t, n, "local layer off holds nothing")
			n, _ = w.LocalStats()
			assert.Equal(t, 2, n, "the writer keeps the two non-empty bodies")

			// Put replaces.
			a2 := testEntry(`"a2"`, []byte("new body"))
			require.NoError(t, w.Put(ctx, "http://x/a", "", a2))
			e, err := r.Get(ctx, "http://x/a", "")
			require.NoError(t, err)
			sameEntry(t, a2, e)

			// Delete removes every variant, and deleting nothing is fine.
			require.NoError(t, w.Delete(ctx, "http://x/a"))
			for _, v := range []string{"", "u1234"} {
				_, err = r.Get(ctx, "http://x/a", v)
				require.ErrorIs(t, err, etagcache.ErrNotFound)
			}
			require.NoError(t, w.Delete(ctx, "http://x/a"))
			_, err = r.Get(ctx, "http://x/empty", "")
			require.NoError(t, err, "other keys stay")
		})
	}
}

// TestCorruptHeaderRecordIsMiss: a header record that fails its checksum or
// does not decode is a miss, and is removed.
func TestCorruptHeaderRecordIsMiss(t *testing.T) {
	ctx := context.Background()
	c := newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
	p := testPrefix(t)
	st := New(c, WithPrefix(p))
	hk := headerKey(p, "http://x/c")
	good := encodeRecord(sha256.Sum256(nil), 0, etagcache.EncodeEntryMeta(testEntry(`"c"`, nil)))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	badMeta := encodeRecord(sha256.Sum256(nil), 0, []byte("ETC\x01garbage"))
	for name, rec := range map[string][]byte{"flipped bit": flipped, "short": good[:10], "bad metadata": badMeta, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, c.HSet(ctx, hk, "", rec).Err())
			_, err := st.Get(ctx, "http://x/c", "")
			require.ErrorIs(t, err, etagcache.ErrNotFound)
			require.ErrorIs(t, c.HGet(ctx, hk, "").Err(), redis.Nil, "corrupt record removed")
			require.NoError(t, c.HSet(ctx, hk, "", rec).Err())
			require.ErrorIs(t, st.UpdateHeader(ctx, "http://x/c", "", testEntry(`"c"`, nil)), etagcache.ErrNotFound)
			require.ErrorIs(t, c.HGet(ctx, hk, "").Err(), redis.Nil, "corrupt record removed by UpdateHeader")
		})
	}
	require.NoError(t, c.HSet(ctx, hk, "", good).Err())
	_, err := st.Get(ctx, "http://x/c", "")
	require.NoError(t, err, "the intact record decodes")
}

// TestMissingOrWrongBodyIsMiss: a header record whose body is gone, or
// whose body does not match its digest, is a miss; the record is removed,
// and so is a body that does not match its name.
func TestMissingOrWrongBodyIsMiss(t *testing.T) {
	ctx := context.Background()
	c := newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
	p := testPrefix(t)
	w := New(c, WithPrefix(p))
	body := bytes.Repeat([]byte("0123456789"), 1000)
	bk := bodyKey(p, sha256.Sum256(body))
	hk := headerKey(p, "http://x/m")
	for name, spoil := range map[string]func() error{
		"missing":    func() error { return c.Del(ctx, bk).Err() },
		"other body": func() error { return c.Set(ctx, bk, bytes.Repeat([]byte("9876543210"), 1000), 0).Err() },
		"truncated":  func() error { return c.Set(ctx, bk, body[:len(body)-1], 0).Err() },
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, w.Put(ctx, "http://x/m", "", testEntry(`"m"`, body)))
			require.NoError(t, spoil())
			r := New(c, WithPrefix(p), WithLocalCache(-1))
			_, err := r.Get(ctx, "http://x/m", "")
			require.ErrorIs(t, err, etagcache.ErrNotFound)
			require.ErrorIs(t, c.HGet(ctx, hk, "").Err(), redis.Nil, "header record removed")
			require.ErrorIs(t, c.Get(ctx, bk).Err(), redis.Nil, "spoilt body removed")
			// The writer's local layer still holds the right body, but the
			// header record is gone: a miss there too.
			_, err = w.Get(ctx, "http://x/m", "")
			require.ErrorIs(t, err, etagcache.ErrNotFound)
		})
	}
}

// TestEmptyBodyIsVerifiedToo: a header record whose checksum holds but
// which claims an empty body while naming the digest of another body is
// damaged: a miss, removed, for Get and UpdateHeader alike. Only the digest
// of the empty body goes with length 0.
func TestEmptyBodyIsVerifiedToo(t *testing.T) {
	ctx := context.Background()
	c := newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
	p := testPrefix(t)
	st := New(c, WithPrefix(p))
	const key = "http://x/empty"
	hk := headerKey(p, key)
	body := []byte("a real body")
	require.NoError(t, st.Put(ctx, key, "", testEntry(`"e"`, body))) // Redis and the local layer hold it
	bad := encodeRecord(sha256.Sum256(body), 0, etagcache.EncodeEntryMeta(testEntry(`"e"`, nil)))
	for _, op := range []string{"Get", "UpdateHeader"} {
		require.NoError(t, c.HSet(ctx, hk, "", bad).Err())
		var err error
		if op == "Get" {
			var e *etagcache.Entry
			e, err = st.Get(ctx, key, "")
			require.ErrorIs(t, err, etagcache.ErrNotFound, "%s served %v", op, e)
		} else {
			err = st.UpdateHeader(ctx, key, "", testEntry(`"e"`, nil))
			require.ErrorIs(t, err, etagcache.ErrNotFound, op)
		}
		require.ErrorIs(t, c.HGet(ctx, hk, "").Err(), redis.Nil, "%s left the damaged record", op)
	}

	require.NoError(t, st.Put(ctx, key, "", testEntry(`"e"`, nil)))
	e, err := st.Get(ctx, key, "")
	require.NoError(t, err)
	assert.Empty(t, e.Body)
	require.NoError(t, st.UpdateHeader(ctx, key, "", e))
}

// TestUpdateHeaderKeepsBody: a header update rewrites the header record,
// keeps the body, and writes nothing when the validators differ or the
// record changed between its read and its swap.
func TestUpdateHeaderKeepsBody(t *testing.T) {
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			ctx := context.Background()
			c := top.client(t)
			p := testPrefix(t)
			st := New(c, WithPrefix(p), WithLocalCache(-1))
			body := bytes.Repeat([]byte("u"), 10000)
			require.NoError(t, st.Put(ctx, "http://x/u", "", testEntry(`"u"`, body)))

			upd := testEntry(`W/"u"`, body) // weak comparison matches
			upd.Header.Set("X-New", "1")
			require.NoError(t, st.UpdateHeader(ctx, "http://x/u", "", upd))
			e, err := st.Get(ctx, "http://x/u", "")
			require.NoError(t, err)
			assert.Equal(t, "1", e.Header.Get("X-New"))
			assert.Equal(t, body, e.Body)

			other := testEntry(`"v"`, body)
			other.Header.Set("X-New", "2")
			require.ErrorIs(t, st.UpdateHeader(ctx, "http://x/u", "", other), etagcache.ErrNotFound)
			require.ErrorIs(t, st.UpdateHeader(ctx, "http://x/none", "", upd), etagcache.ErrNotFound)
			e, err = st.Get(ctx, "http://x/u", "")
			require.NoError(t, err)
			assert.Equal(t, "1", e.Header.Get("X-New"), "nothing written for other validators")

			// The swap is a compare-and-set on the bytes read: a record
			// replaced after the read is not overwritten.
			hk := headerKey(p, "http://x/u")
			raw, err := c.HGet(ctx, hk, "").Bytes()
			require.NoError(t, err)
			replaced := testEntry(`"w"`, []byte("w body"))
			require.NoError(t, st.Put(ctx, "http://x/u", "", replaced))
			n, err := swapScript.Run(ctx, c, []string{hk}, "", sha1Hex(raw), []byte("stale"), 0).Int()
			require.NoError(t, err)
			assert.Zero(t, n)
			e, err = st.Get(ctx, "http://x/u", "")
			require.NoError(t, err)
			sameEntry(t, replaced, e)
		})
	}
}

// TestTTL: header records expire after the TTL, bodies later than the
// records naming them; a header update refreshes both, and so does a read
// that finds less than half the TTL left.
func TestTTL(t *testing.T) {
	ctx := context.Background()
	c := newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
	p := testPrefix(t)
	const ttl = 10 * time.Second
	st := New(c, WithPrefix(p), WithTTL(ttl))
	body := bytes.Repeat([]byte("t"), 5000)
	hk, bk := headerKey(p, "http://x/t"), bodyKey(p, sha256.Sum256(body))
	require.NoError(t, st.Put(ctx, "http://x/t", "", testEntry(`"t"`, body)))
	hTTL, err := c.PTTL(ctx, hk).Result()
	require.NoError(t, err)
	bTTL, err := c.PTTL(ctx, bk).Result()
	require.NoError(t, err)
	assert.True(t, hTTL > 0 && hTTL <= ttl, "header ttl %v", hTTL)
	assert.Greater(t, bTTL, hTTL+bodyGrace/2, "body outlives its header record")

	// Shorten both by hand; the update sets them again.
	require.NoError(t, c.PExpire(ctx, hk, time.Second).Err())
	require.NoError(t, c.PExpire(ctx, bk, time.Second).Err())
	upd := testEntry(`"t"`, body)
	upd.Header.Set("X-Upd", "1")
	require.NoError(t, st.UpdateHeader(ctx, "http://x/t", "", upd))
	hTTL, _ = c.PTTL(ctx, hk).Result()
	bTTL, _ = c.PTTL(ctx, bk).Result()
	assert.Greater(t, hTTL, 5*time.Second)
	assert.Greater(t, bTTL, hTTL)

	// A read that finds less than half the TTL left sets it back, body
	// first; one that finds more leaves it.
	require.NoError(t, c.PExpire(ctx, hk, 4*time.Second).Err())
	require.NoError(t, c.PExpire(ctx, bk, 4*time.Second).Err())
	e, err := New(c, WithPrefix(p), WithTTL(ttl)).Get(ctx, "http://x/t", "")
	require.NoError(t, err)
	require.Equal(t, body, e.Body)
	hTTL, _ = c.PTTL(ctx, hk).Result()
	bTTL, _ = c.PTTL(ctx, bk).Result()
	assert.Greater(t, hTTL, 5*time.Second, "refreshed by a read")
	assert.Greater(t, bTTL, hTTL)
	require.NoError(t, c.PExpire(ctx, hk, 7*time.Second).Err())
	_, err = st.Get(ctx, "http://x/t", "")
	require.NoError(t, err)
	hTTL, _ = c.PTTL(ctx, hk).Result()
	assert.LessOrEqual(t, hTTL, 7*time.Second, "more than half left: not written")

	// Without a TTL nothing expires.
	p2 := p + "nottl:"
	require.NoError(t, New(c, WithPrefix(p2)).Put(ctx, "http://x/t", "", testEntry(`"t"`, body)))
	hTTL, _ = c.PTTL(ctx, headerKey(p2, "http://x/t")).Result()
	bTTL, _ = c.PTTL(ctx, bodyKey(p2, sha256.Sum256(body))).Result()
	assert.Equal(t, time.Duration(-1), hTTL)
	assert.Equal(t, time.Duration(-1), bTTL)
}

// TestDeadlineGuard: with a client that does not bound its commands by the
// context (ContextTimeoutEnabled unset) and a Redis that does not answer
// (SIGSTOP), every method still returns with the context's error when the
// context is done, long before the client's 30s read timeout.
func TestDeadlineGuard(t *testing.T) {
	requireRedis(t)
	p, err := freePort()
	require.NoError(t, err)
	srv, err := startRedis(t.TempDir(), p)
	require.NoError(t, err)
	t.Cleanup(srv.Kill)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	st := New(c)
	require.True(t, st.guard)
	require.NoError(t, c.Ping(context.Background()).Err())

	require.NoError(t, srv.Signal(stopSignal))
	t.Cleanup(func() { _ = srv.Signal(contSignal) })
	calls := map[string]func(ctx context.Context) error{
		"get": func(ctx context.Context) error { _, err := st.Get(ctx, "http://x/g", ""); return err },
		"put": func(ctx context.Context) error { return st.Put(ctx, "http://x/g", "", testEntry(`"g"`, []byte("g"))) },
		"update": func(ctx context.Context) error {
			return st.UpdateHeader(ctx, "http://x/g", "", testEntry(`"g"`, nil))
		},
		"delete": func(ctx context.Context) error { return st.Delete(ctx, "http://x/g") },
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := call(ctx)
		cancel()
		require.Error(t, err, name)
		assert.True(t, errors.Is(err, context.DeadlineExceeded), "%s: %v", name, err)
	}
	// A context that is already done sends nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = st.Get(ctx, "http://x/g", "")
	require.ErrorIs(t, err, context.Canceled)
}

// TestNilClientFails: a Store on a nil client fails its calls, it does not
// panic, and a Transport on it still serves every request.
func TestNilClientFails(t *testing.T) {
	ctx := context.Background()
	st := New(nil)
	_, err := st.Get(ctx, "http://x/", "")
	require.ErrorIs(t, err, errNoClient)
	require.ErrorIs(t, st.Put(ctx, "http://x/", "", testEntry(`"n"`, nil)), errNoClient)
	require.ErrorIs(t, st.UpdateHeader(ctx, "http://x/", "", testEntry(`"n"`, nil)), errNoClient)
	require.ErrorIs(t, st.Delete(ctx, "http://x/"), errNoClient)

	o := newOrigin(t)
	o.Set("/n", []byte("served without a store"))
	w := newWorker(t, nil)
	for range 2 {
		require.Equal(t, []byte("served without a store"), w.mustGet(t, o.URL+"/n").Body)
	}
	assert.Positive(t, w.t.Stats().StoreErrors)
}
