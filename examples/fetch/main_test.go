package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad URL", []string{"-cache", filepath.Join(dir, "a.db"), "not a url"}, "bad URL"},
		{"relative URL", []string{"-cache", filepath.Join(dir, "a.db"), "/just/a/path"}, "bad URL"},
		{"unreachable host", []string{"-cache", filepath.Join(dir, "a.db"), closed}, "connection refused"},
		{"no URL", []string{"-cache", filepath.Join(dir, "a.db")}, "want exactly one URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(tt.args, &out, &errOut)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, out.String())
			var msg bytes.Buffer
			assert.Equal(t, 1, exitCode(err, &msg))
			assert.Equal(t, 1, strings.Count(msg.String(), "\n"), "one line: %q", msg.String())
			assert.True(t, strings.HasPrefix(msg.String(), "fetch: "))
		})
	}
}

func TestFetchHelpExitsZero(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run([]string{"-h"}, &out, &errOut)
	var msg bytes.Buffer
	assert.Equal(t, 0, exitCode(err, &msg))
	assert.Empty(t, msg.String())
	assert.Contains(t, errOut.String(), "usage: fetch")
	assert.Contains(t, errOut.String(), "user cache directory")
}

func docOrigin(t *testing.T) *httptest.Server {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"doc1"`)
		if r.Header.Get("If-None-Match") == `"doc1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, "the document\n")
	}))
	t.Cleanup(origin.Close)
	return origin
}

// A damaged cache file is set aside with a one-line notice, and the fetch
// works (and caches again).
func TestFetchRecoversDamagedCache(t *testing.T) {
	origin := docOrigin(t)
	cache := filepath.Join(t.TempDir(), "fetch.db")
	require.NoError(t, run([]string{"-cache", cache, origin.URL}, io.Discard, io.Discard))
	b, err := os.ReadFile(cache)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cache, b[:len(b)/2+100], 0o600)) // cut short, as by a full disk

	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-cache", cache, "-v", origin.URL}, &out, &errOut))
	assert.Equal(t, "the document\n", out.String())
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	require.NotEmpty(t, lines)
	assert.Contains(t, lines[0], "fetch: the cache file was damaged")
	assert.Contains(t, lines[0], "moved to: "+cache+".corrupt-")
	assert.NotContains(t, errOut.String(), "goroutine")
	assert.Contains(t, errOut.String(), "Cache-Status: ")
	assert.Contains(t, errOut.String(), "time: ")
	aside, err := filepath.Glob(cache + ".corrupt-*")
	require.NoError(t, err)
	assert.Len(t, aside, 1)

	errOut.Reset()
	require.NoError(t, run([]string{"-cache", cache, "-v", origin.URL}, io.Discard, &errOut))
	assert.Contains(t, errOut.String(), "fwd-status=304", "cached again")
}

// A cache that cannot be created is skipped with one line, and the fetch
// goes on without it.
func TestFetchRunsUncachedWhenTheCacheCannotBeOpened(t *testing.T) {
	origin := docOrigin(t)
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-cache", filepath.Join(file, "fetch.db"), "-v", origin.URL}, &out, &errOut))
	assert.Equal(t, "the document\n", out.String())
	assert.Contains(t, errOut.String(), "fetch: running without a cache: ")
	assert.Contains(t, errOut.String(), "choose a writable location")
	assert.Contains(t, errOut.String(), "Cache-Status: (no cache)")
}

// Several fetches at once share the cache file.
func TestFetchesInParallelShareTheCache(t *testing.T) {
	origin := docOrigin(t)
	cache := filepath.Join(t.TempDir(), "fetch.db")
	require.NoError(t, run([]string{"-cache", cache, origin.URL}, io.Discard, io.Discard))
	errs := make(chan error, 4)
	outs := make([]bytes.Buffer, 4)
	for i := range outs {
		go func() {
			var errOut bytes.Buffer
			err := run([]string{"-cache", cache, "-v", origin.URL}, &outs[i], &errOut)
			if err == nil && !strings.Contains(errOut.String(), "fwd-status=304") {
				err = fmt.Errorf("not served from the cache: %s", errOut.String())
			}
			errs <- err
		}()
	}
	for range outs {
		require.NoError(t, <-errs)
	}
	for i := range outs {
		assert.Equal(t, "the document\n", outs[i].String())
	}
}
