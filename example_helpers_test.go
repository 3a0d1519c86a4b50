package etagcache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/etagcache/etagcache"
)

// newExampleOrigin starts a local origin that serves, at every path, a small
// JSON document with a strong ETag and answers a matching If-None-Match
// with 304 Not Modified, as most APIs do.
func newExampleOrigin() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		etag := `"` + strings.Trim(r.URL.Path, "/") + `-v1"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
	}))
}

// show fetches url with client, the header fields given as name/value pairs
// added, and prints the status, how the transport produced the response and
// the body.
func show(client *http.Client, url string, kv ...string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.StatusCode, etagcache.ResultOf(resp), string(body))
}
