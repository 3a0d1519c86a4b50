package etagcache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/etagcache/etagcache"
)

// A poller plugs the transport into its http.Client; from the second request
// on, the origin answers 304 and the caller still gets the whole document.
func ExampleNewTransport() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, `{"status":"green"}`)
	}))
	defer origin.Close()

	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0))
	client := tr.Client()
	for i := 0; i < 3; i++ {
		resp, err := client.Get(origin.URL + "/status")
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body), resp.Header.Get("Cache-Status"))
	}
	st := tr.Stats()
	fmt.Printf("revalidated %d, %d bytes served from the store\n", st.Revalidated, st.BytesServed)
	// Output:
	// 200 {"status":"green"} etagcache; fwd=uri-miss; stored
	// 200 {"status":"green"} etagcache; fwd=stale; fwd-status=304
	// 200 {"status":"green"} etagcache; fwd=stale; fwd-status=304
	// revalidated 2, 36 bytes served from the store
}

// A memory store bounded to 8 MiB: the least recently used entries go first.
// WithMaxEntrySize keeps any single body from taking more than 1 MiB of it.
func ExampleNewMemoryStore() {
	store := etagcache.NewMemoryStore(8 << 20)
	client := &http.Client{
		Transport: etagcache.NewTransport(store, etagcache.WithMaxEntrySize(1<<20)),
	}
	_ = client // use it like any other client
	fmt.Println(store.Len(), "entries")
	// Output: 0 entries
}
