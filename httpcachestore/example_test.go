package httpcachestore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
	"github.com/gregjones/httpcache"
)

// Moving from gregjones/httpcache: keep the backend (here its memory
// cache; diskcache, leveldbcache, memcache or redis work alike) and put
// etagcache's Transport in front of it.
func ExampleNew() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "hello")
	}))
	defer origin.Close()

	backend := httpcache.NewMemoryCache() // was: httpcache.NewTransport(backend)
	client := etagcache.NewTransport(httpcachestore.New(backend)).Client()
	for range 2 {
		resp, err := client.Get(origin.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, etagcache.ResultOf(resp), string(body))
	}
	// Output:
	// 200 miss hello
	// 200 revalidated hello
}
