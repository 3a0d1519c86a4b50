package redisstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

// putSignal is a worker's Store that says when a Put has returned.
type putSignal struct {
	*Store
	puts chan struct{}
}

func (s *putSignal) Put(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	err := s.Store.Put(ctx, key, variant, e)
	s.puts <- struct{}{}
	return err
}

// freshFleet is two workers in freshness mode, each with its own client
// and Store on one prefix, with the default margin for clock skew.
func freshFleet(t *testing.T, top topology) (a, b *etagcache.Transport, aPuts chan struct{}) {
	p := freshPrefix(t)
	aPuts = make(chan struct{}, 16)
	newTr := func(s etagcache.Store) *etagcache.Transport {
		base := http.DefaultTransport.(*http.Transport).Clone()
		t.Cleanup(base.CloseIdleConnections)
		return etagcache.NewTransport(s, etagcache.WithBase(base), etagcache.WithFreshness(true),
			etagcache.WithLogger(slog.New(slog.DiscardHandler)))
	}
	a = newTr(&putSignal{Store: New(top.client(t), WithPrefix(p)), puts: aPuts})
	b = newTr(New(top.client(t), WithPrefix(p)))
	return a, b, aPuts
}

// versions is an origin of one resource whose version a POST moves on.
// GETs answer for the version they find on arrival; a GET arriving while
// hold is set waits for it to close first, as a slow origin's would.
type versions struct {
	mu      sync.Mutex
	v       int
	cc      string
	hold    chan struct{}
	arrived chan struct{}
	half    bool // a held GET sends half its body before it waits
}

func newVersions(t *testing.T, cc string) (*versions, string) {
	o := &versions{v: 1, cc: cc}
	srv := httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(srv.Close)
	return o, srv.URL
}

func (o *versions) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	if r.Method == http.MethodPost {
		o.v++
		o.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v, hold, arrived, half := o.v, o.hold, o.arrived, o.half
	o.hold, o.arrived = nil, nil
	o.mu.Unlock()
	etag := fmt.Sprintf(`"v%d"`, v)
	body := fmt.Sprintf("v=%d %s", v, strings.Repeat("x", 4096))
	h := w.Header()
	h.Set("Cache-Control", o.cc)
	h.Set("Etag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if hold == nil {
		_, _ = io.WriteString(w, body)
		return
	}
	if half {
		_, _ = io.WriteString(w, body[:2048])
		w.(http.Flusher).Flush()
		body = body[2048:]
	}
	if arrived != nil {
		close(arrived)
	}
	select {
	case <-hold:
	case <-r.Context().Done():
		return
	}
	_, _ = io.WriteString(w, body)
}

func (o *versions) set(f func(o *versions)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

func get(t *testing.T, tr *etagcache.Transport, url string) (*http.Response, string) {
	t.Helper()
	resp, err := tr.Client().Get(url)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(b)
}

func post(t *testing.T, tr *etagcache.Transport, url string) {
	t.Helper()
	resp, err := tr.Client().Post(url, "text/plain", strings.NewReader("new"))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// waitPut waits for a Put through a worker's Store to return.
func waitPut(t *testing.T, puts chan struct{}) {
	t.Helper()
	select {
	case <-puts:
	case <-time.After(30 * time.Second):
		require.FailNow(t, "no Put")
	}
}

// Worker A's GET is still streaming when worker B's POST to the same URL
// succeeds; A's pre-POST answer completes afterwards. The next GET, through
// either worker, must go to the origin.
func TestInvalidationWinsOverAnotherWorkersStreamingGET(t *testing.T) {
	requireRedis(t)
	for _, top := range topologies() {
		for _, next := range []string{"A", "B"} {
			t.Run(top.name+"/next through "+next, func(t *testing.T) {
				o, url := newVersions(t, "max-age=600")
				hold := make(chan struct{})
				o.set(func(o *versions) { o.hold, o.half = hold, true })
				a, b, aPuts := freshFleet(t, top)

				resp, err := a.Client().Get(url)
				require.NoError(t, err)
				head := make([]byte, 2048)
				_, err = io.ReadFull(resp.Body, head)
				require.NoError(t, err)
				require.True(t, strings.HasPrefix(string(head), "v=1 "))
				post(t, b, url)
				close(hold)
				_, err = io.Copy(io.Discard, resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				waitPut(t, aPuts) // A's, of the pre-POST body

				tr := map[string]*etagcache.Transport{"A": a, "B": b}[next]
				resp, body := get(t, tr, url)
				assert.True(t, strings.HasPrefix(body, "v=2 "), "A's pre-POST body was stored after B's POST: %.8q", body)
				assert.Equal(t, etagcache.ResultMiss, etagcache.ResultOf(resp))
			})
		}
	}
}

// Worker A's background refresh (stale-while-revalidate) is held at the
// origin, which read the version on arrival, while worker B's POST
// succeeds. The refresh's pre-POST answer must not be stored.
func TestInvalidationWinsOverAnotherWorkersRefresh(t *testing.T) {
	requireRedis(t)
	for _, top := range topologies() {
		for _, next := range []string{"A", "B"} {
			t.Run(top.name+"/next through "+next, func(t *testing.T) {
				// Stale at once, and served so while it is refreshed.
				o, url := newVersions(t, "max-age=0, stale-while-revalidate=600")
				a, b, aPuts := freshFleet(t, top)
				_, body := get(t, a, url)
				require.True(t, strings.HasPrefix(body, "v=1 "))
				waitPut(t, aPuts)

				hold, arrived := make(chan struct{}), make(chan struct{})
				o.set(func(o *versions) { o.v, o.hold, o.arrived = 2, hold, arrived })
				resp, body := get(t, a, url)
				require.True(t, strings.HasPrefix(body, "v=1 "))
				require.Contains(t, resp.Header.Get(etagcache.HeaderCacheStatus), "stale-while-revalidate")
				<-arrived // the refresh has its (v2) answer

				post(t, b, url)
				close(hold)
				waitPut(t, aPuts) // the refresh's

				tr := map[string]*etagcache.Transport{"A": a, "B": b}[next]
				resp, body = get(t, tr, url)
				assert.True(t, strings.HasPrefix(body, "v=3 "), "A's refresh stored its pre-POST answer after B's POST: %.8q", body)
				assert.Equal(t, etagcache.ResultMiss, etagcache.ResultOf(resp))
			})
		}
	}
}

// requestedAt is testEntry requested at at.
func requestedAt(etag string, at time.Time) *etagcache.Entry {
	e := testEntry(etag, []byte("body "+etag))
	e.RequestTime, e.ResponseTime = at, at.Add(time.Millisecond)
	return e
}

// The margin for clock skew: a Put requested less than it after an
// invalidation is dropped too; without a margin, one requested a
// millisecond after is kept (times are compared in milliseconds).
func TestInvalidateClockSkewMargin(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		opts          []Option
		dropped, kept time.Duration
	}{
		"default": {nil, DefaultClockSkew, DefaultClockSkew + time.Millisecond},
		"2s":      {[]Option{WithClockSkew(2 * time.Second)}, 2 * time.Second, 2*time.Second + time.Millisecond},
		"none":    {[]Option{WithClockSkew(-1)}, 0, time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			st := New(newSingleClient(t, sharedSingle(t).Addr, calmTimeout), append(c.opts, WithPrefix(freshPrefix(t)))...)
			require.NoError(t, st.Invalidate(ctx, "http://x/skew", at))
			require.NoError(t, st.Put(ctx, "http://x/skew", "", requestedAt(`"in"`, at.Add(c.dropped))))
			_, err := st.Get(ctx, "http://x/skew", "")
			require.ErrorIs(t, err, etagcache.ErrNotFound, "a Put requested %v after the invalidation", c.dropped)
			e := requestedAt(`"out"`, at.Add(c.kept))
			require.NoError(t, st.Put(ctx, "http://x/skew", "", e))
			got, err := st.Get(ctx, "http://x/skew", "")
			require.NoError(t, err, "a Put requested %v after the invalidation", c.kept)
			sameEntry(t, e, got)
		})
	}
}

// The tombstone's life: a hash holding only a tombstone expires (in an hour,
// or the TTL if longer); once an entry is stored beside it, the hash lives
// as its entries do, tombstone included (forever without a TTL, and never
// shorter than the tombstone's life with one); Delete and the removal of a
// damaged last record keep it, expiring again.
func TestTombstoneLife(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		ttl, life time.Duration
	}{
		"no TTL":     {0, tombstoneLife},
		"short TTL":  {10 * time.Minute, tombstoneLife},
		"longer TTL": {3 * time.Hour, 3 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			rc := newSingleClient(t, sharedSingle(t).Addr, calmTimeout)
			st := New(rc, WithPrefix(freshPrefix(t)), WithTTL(c.ttl))
			const key = "http://x/life"
			hk := headerKey(st.prefix, key)
			tombOnly := func(what string) {
				t.Helper()
				fields, err := rc.HKeys(ctx, hk).Result()
				require.NoError(t, err)
				require.Equal(t, []string{tombField}, fields, what)
				pttl, err := rc.PTTL(ctx, hk).Result()
				require.NoError(t, err)
				assert.InDelta(t, c.life.Seconds(), pttl.Seconds(), 60, "%s: the hash of a tombstone alone expires", what)
				_, err = st.Get(ctx, key, "")
				require.ErrorIs(t, err, etagcache.ErrNotFound, what)
			}
			require.NoError(t, st.Put(ctx, key, "", requestedAt(`"old"`, at.Add(-time.Hour))))
			require.NoError(t, st.Invalidate(ctx, key, at))
			tombOnly("after Invalidate")
			v, err := rc.HGet(ctx, hk, tombField).Result()
			require.NoError(t, err)
			assert.Equal(t, strconv.FormatInt(at.UnixMilli(), 10), v)

			require.NoError(t, st.Put(ctx, key, "", requestedAt(`"new"`, at.Add(time.Hour))))
			pttl, err := rc.PTTL(ctx, hk).Result()
			require.NoError(t, err)
			if c.ttl == 0 {
				assert.Equal(t, time.Duration(-1), pttl, "an entry beside a tombstone expires without a TTL")
			} else {
				assert.InDelta(t, max(c.ttl, c.life).Seconds(), pttl.Seconds(), 60)
			}
			require.NoError(t, st.Put(ctx, key, "", requestedAt(`"old"`, at.Add(-time.Minute))))
			got, err := st.Get(ctx, key, "")
			require.NoError(t, err)
			assert.Equal(t, `"new"`, got.Header.Get("Etag"), "the tombstone went with the Put beside it")

			require.NoError(t, st.Delete(ctx, key))
			tombOnly("after Delete")
			require.NoError(t, st.Put(ctx, key, "", requestedAt(`"old"`, at.Add(-time.Minute))))
			tombOnly("after an older Put")

			// A damaged last record is removed; the tombstone stays.
			require.NoError(t, st.Put(ctx, key, "", requestedAt(`"new"`, at.Add(time.Hour))))
			damageHeaderRecord(t, st, key, "")
			_, err = st.Get(ctx, key, "")
			require.ErrorIs(t, err, etagcache.ErrNotFound)
			tombOnly("after the damaged record was dropped")
		})
	}
}

// Variants starting with "~" are the Store's own fields: never written,
// read or updated as entries.
func TestReservedVariants(t *testing.T) {
	ctx := context.Background()
	st := New(newSingleClient(t, sharedSingle(t).Addr, calmTimeout), WithPrefix(freshPrefix(t)))
	const key = "http://x/reserved"
	require.NoError(t, st.Invalidate(ctx, key, time.Unix(1600000000, 0)))
	for _, v := range []string{tombField, "~", "~other"} {
		require.Error(t, st.Put(ctx, key, v, testEntry(`"r"`, []byte("r"))), v)
		_, err := st.Get(ctx, key, v)
		require.ErrorIs(t, err, etagcache.ErrNotFound, v)
		require.ErrorIs(t, st.UpdateHeader(ctx, key, v, testEntry(`"r"`, []byte("r"))), etagcache.ErrNotFound, v)
	}
	require.NoError(t, st.Put(ctx, key, "", testEntry(`"r"`, []byte("r"))))
	_, err := st.Get(ctx, key, "")
	require.NoError(t, err)
}
