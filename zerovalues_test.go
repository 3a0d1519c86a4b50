package etagcache

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// One rule for sizes across the module: 0 means the default, a negative
// value means no limit.
func TestZeroMeansDefaultNegativeMeansNoLimit(t *testing.T) {
	assert.Equal(t, int64(defaultMemoryMaxBytes), NewMemoryStore(0).maxBytes)
	assert.Equal(t, int64(math.MaxInt64), NewMemoryStore(-1).maxBytes)
	assert.Equal(t, int64(1000), NewMemoryStore(1000).maxBytes)

	assert.Equal(t, int64(DefaultMaxEntrySize), NewTransport(NewMemoryStore(0)).maxSize)
	assert.Equal(t, int64(DefaultMaxEntrySize), NewTransport(NewMemoryStore(0), WithMaxEntrySize(0)).maxSize)
	assert.Equal(t, int64(math.MaxInt64), NewTransport(NewMemoryStore(0), WithMaxEntrySize(-1)).maxSize)
	assert.Equal(t, int64(10), NewTransport(NewMemoryStore(0), WithMaxEntrySize(10)).maxSize)
}

// WithMaxEntrySize(0) stores bodies up to the default (it used to store
// nothing); a negative size stores a body past the default.
func TestMaxEntrySizeZeroAndNegative(t *testing.T) {
	big := strings.Repeat("x", DefaultMaxEntrySize+1)
	o := newRecordingOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		body := "small"
		if r.URL.Path == "/big" {
			body = big
		}
		etagHandler(`"v1"`, body)(w, r)
	})
	for _, tc := range []struct {
		n     int64
		small bool
	}{{0, true}, {-1, true}, {4, false}} {
		c := NewTransport(NewMemoryStore(-1), WithMaxEntrySize(tc.n)).Client()
		fetch(t, c, o.URL+"/small")
		resp, _ := fetch(t, c, o.URL+"/small")
		assert.Equal(t, tc.small, ResultOf(resp) == ResultRevalidated, "n=%d small", tc.n)
	}
	// Past the default: stored only without a limit. (The default's own
	// bound is tested with the other body-size rules.)
	ms := NewMemoryStore(-1)
	c := NewTransport(ms, WithMaxEntrySize(-1)).Client()
	_, body := fetch(t, c, o.URL+"/big")
	require.Len(t, body, len(big))
	assert.Equal(t, 1, ms.Len())
	assert.Greater(t, ms.Size(), int64(DefaultMaxEntrySize))
}

// A nil store is reported at construction, and the Transport works with a
// memory store instead of panicking on its first request. A nil *BoltStore
// (what a failed OpenBoltStore returns) counts as nil.
func TestNewTransportNilStore(t *testing.T) {
	var failedOpen *BoltStore
	for name, store := range map[string]Store{"nil": nil, "nil *BoltStore": failedOpen, "nil *MemoryStore": (*MemoryStore)(nil)} {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			tr := NewTransport(store, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			require.Len(t, lines, 1, "one line, at construction")
			var rec map[string]any
			require.NoError(t, json.Unmarshal([]byte(lines[0]), &rec))
			assert.Equal(t, "ERROR", rec["level"])
			assert.Contains(t, rec["msg"], "nil Store")

			o := newRecordingOrigin(t, etagHandler(`"v1"`, "doc"))
			c := tr.Client()
			fetch(t, c, o.URL)
			resp, body := fetch(t, c, o.URL)
			assert.Equal(t, "doc", body)
			assert.Equal(t, ResultRevalidated, ResultOf(resp), "the stand-in memory store caches")
		})
	}
	// A store that is not nil is used as given, and nothing is logged.
	var logs bytes.Buffer
	ms := NewMemoryStore(0)
	tr := NewTransport(ms, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	assert.Same(t, ms, tr.store.(*MemoryStore))
	assert.Empty(t, logs.String())
}

// WithLogger(nil) is the default logger, as every nil option is the
// default; a discarding logger is asked for explicitly.
func TestWithLoggerNilIsDefault(t *testing.T) {
	assert.Same(t, slog.Default(), NewTransport(NewMemoryStore(0), WithLogger(nil)).log)
	assert.Same(t, slog.Default(), NewTransport(NewMemoryStore(0)).log)
	assert.NotNil(t, NewTransport(nil, WithLogger(slog.New(slog.DiscardHandler))).store, "a nil store with a discarding logger still gets its stand-in")

	o := newRecordingOrigin(t, etagHandler(`"v1"`, "doc"))
	tr := NewTransport(keyNamingStore{}, WithLogger(slog.New(slog.DiscardHandler)))
	_, body := fetch(t, tr.Client(), o.URL)
	assert.Equal(t, "doc", body)
	assert.Equal(t, int64(2), tr.Stats().StoreErrors, "failures still counted")
}

// The bolt options follow the same rule.
func TestBoltOptionZeroValues(t *testing.T) {
	open := func(opts ...BoltOption) boltConfig {
		s, err := OpenBoltStore(t.TempDir()+"/c.db", opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s.cfg
	}
	for _, cfg := range []boltConfig{open(), open(WithBoltMaxBytes(0), WithBoltLockTimeout(0), WithBoltCache(0), WithBoltLogger(nil))} {
		assert.Equal(t, int64(defaultBoltMaxBytes), cfg.maxBytes)
		assert.Equal(t, defaultBoltLockTimeout, cfg.lockTimeout)
		assert.Equal(t, int64(defaultBoltCache), cfg.cache)
		assert.Same(t, slog.Default(), cfg.log)
	}
	neg := open(WithBoltMaxBytes(-1), WithBoltLockTimeout(-1), WithBoltCache(-1))
	assert.Equal(t, int64(math.MaxInt64), neg.maxBytes, "no bound")
	assert.Zero(t, neg.lockTimeout, "a single attempt")
	assert.Zero(t, neg.cache, "entry cache off")

	s, err := OpenBoltStore(t.TempDir()+"/off.db", WithBoltCache(-1))
	require.NoError(t, err)
	defer s.Close()
	assert.Nil(t, s.cache.mem, "a negative size turns the entry cache off")
}
