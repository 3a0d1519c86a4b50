package etagcache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
)

func ExampleWithoutStore() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		fmt.Fprint(w, "report")
	}))
	defer origin.Close()
	tr := NewTransport(NewMemoryStore(0))
	req, _ := http.NewRequestWithContext(WithoutStore(context.Background()), http.MethodGet, origin.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(ResultOf(resp), tr.Stats().Stored)
	// Output: bypass 0
}

func ExampleWithRefresh() {
	n := 0
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "version %d", n)
	}))
	defer origin.Close()
	c := NewTransport(NewMemoryStore(0), WithFreshness(true)).Client()
	get := func(ctx context.Context) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, origin.URL, nil)
		resp, err := c.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	fmt.Println(get(context.Background()))
	fmt.Println(get(context.Background()))              // fresh: from the store
	fmt.Println(get(WithRefresh(context.Background()))) // fetched anew, replacing the entry
	fmt.Println(get(context.Background()))
	// Output:
	// version 1
	// version 1
	// version 2
	// version 2
}

func ExampleOnlyIfCached() {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprint(w, "hello")
	}))
	defer origin.Close()
	tr := NewTransport(NewMemoryStore(0), WithFreshness(true))
	get := func() int {
		req, _ := http.NewRequestWithContext(OnlyIfCached(context.Background()), http.MethodGet, origin.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	fmt.Println(get()) // nothing stored: the cache answers 504 itself
	resp, _ := tr.Client().Get(origin.URL)
	_, _ = io.Copy(io.Discard, resp.Body) // read to the end: stored
	resp.Body.Close()
	fmt.Println(get())
	// Output:
	// 504
	// 200
}
