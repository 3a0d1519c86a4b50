package main

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Ten polls of the local origin (a change every 5th request), then a
// scrape of /metrics, parsed as Prometheus parses it.
func TestExampleServesMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stderr lockedBuffer
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-every", "1ms", "-polls", "10"}, &stderr, ready)
	}()

	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, stderr.b.String())
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)

	counter := func(name string) float64 {
		require.Contains(t, mfs, name)
		m := mfs[name].GetMetric()
		require.Len(t, m, 1, name)
		require.Equal(t, "poller", m[0].GetLabel()[0].GetValue())
		return m[0].GetCounter().GetValue()
	}
	assert.Equal(t, float64(10), counter("etagcache_requests_total"))
	// Polls 1 and 6 fetch versions 0 and 1; the other 8 are 304s.
	assert.Equal(t, float64(8), counter("etagcache_revalidated_total"))
	assert.Equal(t, float64(1), counter("etagcache_changed_total"))
	assert.Equal(t, float64(1), mfs["etagcache_store_entries"].GetMetric()[0].GetGauge().GetValue())
	assert.Contains(t, mfs, "go_goroutines")

	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	assert.Contains(t, stderr.b.String(), "metrics at http://"+addr+"/metrics")
}
