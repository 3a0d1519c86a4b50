package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
)

func TestFetchRevalidatesAcrossRuns(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"doc1"`)
		if r.Header.Get("If-None-Match") == `"doc1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "the document\n")
	}))
	defer origin.Close()
	cache := filepath.Join(t.TempDir(), "sub", "fetch.db")

	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-cache", cache, "-v", origin.URL}, &out, &errOut))
	assert.Equal(t, "the document\n", out.String())
	assert.Contains(t, errOut.String(), "fwd=uri-miss; stored")

	out.Reset()
	errOut.Reset()
	require.NoError(t, run([]string{"-cache", cache, "-v", origin.URL}, &out, &errOut))
	assert.Equal(t, "the document\n", out.String())
	assert.Contains(t, errOut.String(), "fwd=stale; fwd-status=304")
	assert.Contains(t, errOut.String(), "saved: 13 of 13 body bytes came from the cache")

	fi, err := os.Stat(cache)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestFetchErrorsAreOneClearLine(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	held := filepath.Join(dir, "held.db")
	s, err := etagcache.OpenBoltStore(held)
	require.NoError(t, err)
	defer s.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad URL", []string{"-cache", filepath.Join(dir, "a.db"), "not a url"}, "bad URL"},
		{"relative URL", []string{"-cache", filepath.Join(dir, "a.db"), "/just/a/path"}, "bad URL"},
		{"unreachable host", []string{"-cache", filepath.Join(dir, "a.db"), closed}, "connection refused"},
		{"cache in use", []string{"-cache", held, "http://127.0.0.1:1/"}, "in use by another process"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tt.args, &out, &errOut)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "the message is not one line")
			assert.Empty(t, out.String())
		})
	}
}
