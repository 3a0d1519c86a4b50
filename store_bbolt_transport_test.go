package etagcache

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// boltLoops returns n, or a tenth of it in a -race build, whose
// instrumentation of every 4 MiB copy makes the full count take minutes.
func boltLoops(n int) int {
	if raceBuild() {
		return n / 10
	}
	return n
}

// raceBuild reports whether this is a -race build.
func raceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				return true
			}
		}
	}
	return false
}

// boltOrigin serves body under a fixed ETag and answers a matching
// If-None-Match with 304. Each answer carries the header fields of extra(n),
// n counting the requests from 1.
func boltOrigin(t testing.TB, body []byte, extra func(n int64) http.Header) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, vs := range extra(n.Add(1)) {
			w.Header()[k] = vs
		}
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// boltPoll GETs url through c n times and returns the time per request. The
// first and last bodies are checked against want; all are read in full.
func boltPoll(t testing.TB, c *http.Client, url string, n int, want []byte) time.Duration {
	start := time.Now()
	for i := range n {
		resp, err := c.Get(url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var got []byte
		if i == 0 || i == n-1 {
			got, err = io.ReadAll(resp.Body)
		} else {
			var m int64
			m, err = io.Copy(io.Discard, resp.Body)
			got = want[:m]
		}
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.True(t, bytes.Equal(want, got), "body differs")
	}
	return time.Since(start) / time.Duration(n)
}

func TestBoltTransportRevalidationWritesOnlyMetadata(t *testing.T) {
	n := boltLoops(1000)
	body := randomBytes(rand.New(rand.NewPCG(4, 4)), 4<<20)
	srv := boltOrigin(t, body, func(n int64) http.Header {
		return http.Header{"X-Revision": {strconv.FormatInt(n, 10)}} // so every 304 is persisted
	})

	s, _ := openTestBolt(t)
	tr := NewTransport(s)
	boltPoll(t, tr.Client(), srv.URL, 1, body) // stores the entry
	require.Equal(t, int64(1), tr.Stats().Stored)
	boltFlush(t, s)
	w0 := boltWritesNow(s)
	boltTime := boltPoll(t, tr.Client(), srv.URL, n, body)
	w := boltWritesNow(s).sub(w0)
	st := tr.Stats()
	assert.Equal(t, int64(n), st.Revalidated)
	assert.Zero(t, st.StoreErrors)

	mem := NewMemoryStore(0)
	mtr := NewTransport(mem)
	boltPoll(t, mtr.Client(), srv.URL, 1, body)
	wchar0 := procWchar()
	memTime := boltPoll(t, mtr.Client(), srv.URL, n, body)
	memWchar := procWchar() - wchar0
	assert.Equal(t, int64(n), mtr.Stats().Revalidated)

	t.Logf("per revalidation of a 4 MiB entry: bolt store %v, %d commits/%d, %d page bytes, %d bytes written by the process (wchar; memory store: %d); memory store %v",
		boltTime, w.commits, n, w.pageBytes/int64(n), w.wchar/int64(n), memWchar/int64(n), memTime)
	assert.Equal(t, int64(n), w.commits, "one UpdateHeader per revalidation")
	assert.Less(t, w.pageBytes/int64(n), int64(64<<10))
	assert.Less(t, w.pageBytes, int64(n*len(body)/100), "revalidation rewrote the body")
	if w.wchar >= 0 {
		assert.Less(t, w.wchar, int64(n*len(body)/100), "revalidation rewrote the body")
	}

	assert.Equal(t, 1, s.Len())
}

func TestBoltTransportPollingWithDateOnly304sWritesNothing(t *testing.T) {
	const n = 100
	body := randomBytes(rand.New(rand.NewPCG(5, 5)), 256<<10)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	srv := boltOrigin(t, body, func(n int64) http.Header {
		return http.Header{"Date": {start.Add(time.Duration(n) * time.Second).Format(http.TimeFormat)}}
	})
	s, _ := openTestBolt(t)
	tr := NewTransport(s)
	boltPoll(t, tr.Client(), srv.URL, 1, body)
	require.Equal(t, int64(1), tr.Stats().Stored)
	boltFlush(t, s)

	w0 := boltWritesNow(s)
	boltPoll(t, tr.Client(), srv.URL, n, body)
	w := boltWritesNow(s).sub(w0)
	assert.Equal(t, int64(n), tr.Stats().Revalidated)
	assert.Zero(t, tr.Stats().StoreErrors)
	assert.Zero(t, w.commits, "write transactions")
	assert.Zero(t, w.writeCalls, "bbolt writes")
	assert.Zero(t, w.pageBytes)
}

// Bodies stored through the transport, with the checksum it computes as
// they arrive, are read back from the file whole, after a reopen, with the
// memory cache off: known length and chunked, inline and in chunks.
func TestBoltTransportChecksummedBodiesReadBack(t *testing.T) {
	path := t.TempDir() + "/cache.db"
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := map[string][]byte{}
	for _, n := range []int{0, 700, boltInlineMax + 1, 300_000, 2<<20 + 5} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		bodies[strconv.Itoa(n)] = b
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"x"`)
		if r.Header.Get("If-None-Match") == `"x"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		b := bodies[r.URL.Query().Get("n")]
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)

	// getAll fetches every body, both ways, and checks each; reopened says
	// the bodies must come from the file, the origin only confirming them.
	getAll := func(s *BoltStore, reopened bool) {
		c := NewTransport(s).Client()
		for n, b := range bodies {
			for _, chunked := range []string{"", "1"} {
				resp, err := c.Get(srv.URL + "/?n=" + n + "&chunked=" + chunked)
				require.NoError(t, err)
				got, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				require.True(t, bytes.Equal(b, got), "size %s chunked=%q", n, chunked)
				if reopened {
					assert.Contains(t, resp.Header.Get("Cache-Status"), "fwd-status=304", "size %s chunked=%q", n, chunked)
				}
			}
		}
	}
	s, err := OpenBoltStore(path, WithBoltCache(-1))
	require.NoError(t, err)
	getAll(s, false)
	require.NoError(t, s.Close())

	s, err = OpenBoltStore(path, WithBoltCache(-1))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, 2*len(bodies), s.Len())
	getAll(s, true)
}
