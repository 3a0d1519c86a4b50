package etagcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedactKey(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"https://api.example.com/repos/a/b", "https://api.example.com/repos/a/b"},
		{"https://api.example.com/x?access_token=s3cret&page=2", "https://api.example.com/x?redacted"},
		{"https://api.example.com/x?", "https://api.example.com/x?redacted"},
		{"http://alice:pw@example.com/doc?sig=abc", "http://example.com/doc?redacted"},
		{"http://alice@example.com", "http://example.com"},
		{"http://example.com/a@b", "http://example.com/a@b"}, // an @ in the path is not user info
		{"", ""},
	} {
		assert.Equal(t, tc.want, redactKey(tc.key), tc.key)
	}
}

// keyNamingStore fails every call with an error that repeats the key, as a
// store that names what it failed on would.
type keyNamingStore struct{}

func (keyNamingStore) Get(_ context.Context, key, _ string) (*Entry, error) {
	return nil, fmt.Errorf("get %s: %w", key, errors.New("connection refused"))
}

func (keyNamingStore) Put(_ context.Context, key, _ string, _ *Entry) error {
	return fmt.Errorf("put %s: disk full", key)
}

func (keyNamingStore) Delete(_ context.Context, key string) error {
	return fmt.Errorf("delete %s: read-only", key)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Store failures are logged with the resource's scheme, host and path, but
// never with its query string (tokens, signatures) or user information,
// neither in the key field nor in the store's own error text.
func TestStoreFailureLogsRedactKey(t *testing.T) {
	o := newRecordingOrigin(t, etagHandler(`"v1"`, "doc"))
	var logs syncBuffer
	tr := NewTransport(keyNamingStore{}, WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	c := tr.Client()

	u := strings.Replace(o.URL, "http://", "http://alice:hunter2@", 1) + "/doc?access_token=s3cret"
	_, body := fetch(t, c, u) // get fails, then put fails
	assert.Equal(t, "doc", body)
	req, err := http.NewRequest(http.MethodPost, u, nil)
	require.NoError(t, err)
	resp, err := c.Do(req) // delete fails
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())

	text := logs.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	require.Len(t, lines, 3, text) // get, put, delete
	for _, secret := range []string{"s3cret", "access_token", "hunter2", "alice"} {
		assert.NotContains(t, text, secret)
	}
	for _, op := range []string{`"op":"get"`, `"op":"put"`, `"op":"delete"`} {
		assert.Contains(t, text, op)
	}
	want := o.URL + "/doc?redacted"
	assert.Equal(t, 6, strings.Count(text, want), "key and err of each line name the resource:\n%s", text)
	assert.Equal(t, int64(3), tr.Stats().StoreErrors)
}
