package prommetrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/prommetrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// versionedOrigin serves one document whose version the test can bump, with
// a strong ETag, answering a matching If-None-Match with 304.
type versionedOrigin struct {
	*httptest.Server
	version atomic.Int64
}

func newVersionedOrigin(t *testing.T) *versionedOrigin {
	o := &versionedOrigin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := o.version.Load()
		etag := `"v` + string(rune('0'+v)) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "document version "+string(rune('0'+v))+" of "+r.URL.Path) // 24 bytes for /a
	}))
	t.Cleanup(o.Close)
	return o
}

func get(t *testing.T, c *http.Client, url string, kv ...string) etagcache.Result {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return etagcache.ResultOf(resp)
}

// downStore is a store whose backend is down, and which reports no size.
type downStore struct{}

var errDown = context.DeadlineExceeded

func (downStore) Get(context.Context, string, string) (*etagcache.Entry, error) { return nil, errDown }
func (downStore) Put(context.Context, string, string, *etagcache.Entry) error   { return errDown }
func (downStore) Delete(context.Context, string) error                          { return errDown }

// scrape fetches /metrics from h over HTTP and parses it as the Prometheus
// text format, as a Prometheus server would.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, expfmt.TypeTextPlain, expfmt.ResponseFormat(resp.Header).FormatType(), resp.Header.Get("Content-Type"))
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// value returns the value of the sample of family name whose label
// label=value, and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name, label, lv string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == lv {
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					return m.GetCounter().GetValue(), true
				case dto.MetricType_GAUGE:
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestCollectorScrapedAfterRealRequests(t *testing.T) {
	o := newVersionedOrigin(t)
	mem := etagcache.NewMemoryStore(0)
	api := etagcache.NewTransport(mem)
	bolt, err := etagcache.OpenBoltStore(filepath.Join(t.TempDir(), "http.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = bolt.Close() })
	disk := etagcache.NewTransport(bolt)
	down := etagcache.NewTransport(downStore{}, etagcache.WithLogger(slog.New(slog.DiscardHandler)))

	c := prommetrics.New()
	require.NoError(t, c.AddTransport("api", api))
	require.NoError(t, c.AddTransport("disk", disk))
	require.NoError(t, c.AddTransport("down", down))
	require.NoError(t, c.AddStore("api", mem))
	require.NoError(t, c.AddStore("disk", bolt))
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	// Before any request: every counter is there, at zero.
	mfs := scrape(t, handler)
	for _, name := range []string{"etagcache_requests_total", "etagcache_revalidated_total", "etagcache_store_served_bytes_total"} {
		v, ok := value(mfs, name, "transport", "api")
		assert.True(t, ok, name)
		assert.Zero(t, v, name)
	}

	ac := api.Client()
	require.Equal(t, etagcache.ResultMiss, get(t, ac, o.URL+"/a"))        // stored
	require.Equal(t, etagcache.ResultRevalidated, get(t, ac, o.URL+"/a")) // 24 bytes served
	require.Equal(t, etagcache.ResultRevalidated, get(t, ac, o.URL+"/a")) // 24 more
	require.Equal(t, etagcache.ResultMiss, get(t, ac, o.URL+"/b"))        // stored
	require.Equal(t, etagcache.ResultBypass, get(t, ac, o.URL+"/a", "If-None-Match", `"v0"`))
	o.version.Store(1)
	require.Equal(t, etagcache.ResultMiss, get(t, ac, o.URL+"/a")) // changed, stored again
	require.Equal(t, etagcache.ResultRevalidated, get(t, ac, o.URL+"/a"))

	dc := disk.Client()
	for range 3 {
		get(t, dc, o.URL+"/a")
	}
	get(t, down.Client(), o.URL+"/a") // get and put fail
	// The bolt store writes Puts behind, within milliseconds; its Size
	// counts what is written. Any synchronous write lands the queue first.
	require.NoError(t, bolt.Delete(context.Background(), "http://flush.invalid/"))

	mfs = scrape(t, handler)
	want := map[string]map[string]float64{
		"api":  {"requests": 7, "stored": 3, "revalidated": 3, "changed": 1, "bypassed": 1, "store_errors": 0, "store_served_bytes": 3 * 24},
		"disk": {"requests": 3, "stored": 1, "revalidated": 2, "changed": 0, "bypassed": 0, "store_errors": 0, "store_served_bytes": 2 * 24},
		"down": {"requests": 1, "stored": 0, "revalidated": 0, "changed": 0, "bypassed": 0, "store_errors": 2, "store_served_bytes": 0},
	}
	for tr, counters := range want {
		for name, w := range counters {
			full := "etagcache_" + name + "_total"
			v, ok := value(mfs, full, "transport", tr)
			require.True(t, ok, "%s{transport=%q} missing", full, tr)
			assert.Equal(t, w, v, "%s{transport=%q}", full, tr)
			assert.Equal(t, dto.MetricType_COUNTER, mfs[full].GetType(), full)
			assert.NotEmpty(t, mfs[full].GetHelp(), full)
		}
	}
	// The numbers are Stats', read at scrape time.
	st := api.Stats()
	v, _ := value(mfs, "etagcache_requests_total", "transport", "api")
	assert.Equal(t, float64(st.Requests), v)

	// The hit ratio of the README's PromQL, from the scraped values.
	reval, _ := value(mfs, "etagcache_revalidated_total", "transport", "api")
	reqs, _ := value(mfs, "etagcache_requests_total", "transport", "api")
	assert.InDelta(t, 3.0/7.0, reval/reqs, 1e-9)

	for _, s := range []struct {
		name  string
		store interface {
			Len() int
			Size() int64
		}
		entries float64
	}{{"api", mem, 2}, {"disk", bolt, 1}} {
		n, ok := value(mfs, "etagcache_store_entries", "store", s.name)
		require.True(t, ok, s.name)
		assert.Equal(t, s.entries, n, s.name)
		assert.Equal(t, float64(s.store.Len()), n, s.name)
		b, ok := value(mfs, "etagcache_store_bytes", "store", s.name)
		require.True(t, ok, s.name)
		assert.Equal(t, float64(s.store.Size()), b, s.name)
		assert.Greater(t, b, 2*24.0, "%s: bodies, headers and keys", s.name)
		assert.Equal(t, dto.MetricType_GAUGE, mfs["etagcache_store_bytes"].GetType())
	}
	_, ok := value(mfs, "etagcache_store_entries", "store", "down")
	assert.False(t, ok)

	// A Clear shows at the next scrape.
	mem.Clear()
	mfs = scrape(t, handler)
	n, _ := value(mfs, "etagcache_store_entries", "store", "api")
	assert.Zero(t, n)

	// Remove drops a transport and a store from the next scrape.
	c.Remove("disk")
	mfs = scrape(t, handler)
	_, ok = value(mfs, "etagcache_requests_total", "transport", "disk")
	assert.False(t, ok)
	_, ok = value(mfs, "etagcache_store_bytes", "store", "disk")
	assert.False(t, ok)
}

func TestCollectorFollowsNamingConventions(t *testing.T) {
	c := prommetrics.New()
	require.NoError(t, c.AddTransport("t", etagcache.NewTransport(etagcache.NewMemoryStore(0))))
	require.NoError(t, c.AddStore("s", etagcache.NewMemoryStore(0)))
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems)
	assert.Equal(t, 9, testutil.CollectAndCount(c))
}

func TestCollectorRefusals(t *testing.T) {
	c := prommetrics.New()
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0))
	require.NoError(t, c.AddTransport("a", tr))
	assert.Error(t, c.AddTransport("a", tr), "a name is taken once")
	assert.Error(t, c.AddTransport("b", nil))
	require.NoError(t, c.AddStore("a", etagcache.NewMemoryStore(0)), "transports and stores have separate names")
	assert.Error(t, c.AddStore("a", etagcache.NewMemoryStore(0)))
	assert.ErrorIs(t, c.AddStore("down", downStore{}), prommetrics.ErrNoSize)

	// Registering it twice on one registry is refused, as for any collector.
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	assert.Error(t, reg.Register(prommetrics.New()))
}
