package etagcache_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/etagcache/etagcache"
)

// roundTripperFunc lets a function be an http.RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// WithBase puts the cache in front of any RoundTripper: here one that
// prints the validator each request carries on its way to the origin.
func ExampleWithBase() {
	origin := newExampleOrigin()
	defer origin.Close()

	base := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		fmt.Printf("sending If-None-Match: %q\n", r.Header.Get("If-None-Match"))
		return http.DefaultTransport.RoundTrip(r)
	})
	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithBase(base)).Client()
	show(client, origin.URL+"/repo")
	show(client, origin.URL+"/repo")
	// Output:
	// sending If-None-Match: ""
	// 200 miss {"path":"/repo"}
	// sending If-None-Match: "\"repo-v1\""
	// 200 revalidated {"path":"/repo"}
}

// failingStore is a Store whose backend is down.
type failingStore struct{}

var errBackendDown = errors.New("connection refused")

func (failingStore) Get(context.Context, string, string) (*etagcache.Entry, error) {
	return nil, errBackendDown
}
func (failingStore) Put(context.Context, string, string, *etagcache.Entry) error {
	return errBackendDown
}
func (failingStore) Delete(context.Context, string) error { return errBackendDown }

// A store that fails never fails a request: the transport logs a warning
// through WithLogger's logger and goes to the origin. Log lines name the
// resource without its query string, which often carries tokens.
func ExampleWithLogger() {
	origin := newExampleOrigin()
	defer origin.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{} // keep the output stable
			case "key":
				a.Value = slog.StringValue(strings.Replace(a.Value.String(), origin.URL, "http://origin", 1))
			}
			return a
		},
	}))
	tr := etagcache.NewTransport(failingStore{}, etagcache.WithLogger(logger))
	show(tr.Client(), origin.URL+"/doc?access_token=s3cret")
	fmt.Println("store errors:", tr.Stats().StoreErrors)
	// Output:
	// level=WARN msg="etagcache: store failed; going on without it" op=get key=http://origin/doc?redacted err="connection refused"
	// level=WARN msg="etagcache: store failed; going on without it" op=put key=http://origin/doc?redacted err="connection refused"
	// 200 miss {"path":"/doc"}
	// store errors: 2
}

// WithMaxEntrySize keeps big bodies out of the store: they stream through
// to the caller, and the next request fetches them again.
func ExampleWithMaxEntrySize() {
	origin := newExampleOrigin()
	defer origin.Close()

	store := etagcache.NewMemoryStore(0)
	client := etagcache.NewTransport(store, etagcache.WithMaxEntrySize(16)).Client()
	show(client, origin.URL+"/a")                  // {"path":"/a"}: 12 bytes, stored
	show(client, origin.URL+"/a-much-longer-name") // 29 bytes, not stored
	show(client, origin.URL+"/a")                  // revalidated
	show(client, origin.URL+"/a-much-longer-name") // fetched again
	fmt.Println(store.Len(), "entry stored")
	// Output:
	// 200 miss {"path":"/a"}
	// 200 miss {"path":"/a-much-longer-name"}
	// 200 revalidated {"path":"/a"}
	// 200 miss {"path":"/a-much-longer-name"}
	// 1 entry stored
}

// By default each token is a partition of its own, so a rotated token
// starts with a cold cache. WithPartition names the user instead: here
// both tokens belong to one GitHub App installation, and the second
// request, with a new token, is already a revalidation.
func ExampleWithPartition() {
	origin := newExampleOrigin()
	defer origin.Close()

	installation := func(r *http.Request) string {
		// Whatever identifies the account, never the token itself. Only
		// requests carrying a token of installation 42 are sent here.
		if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer inst42-") {
			return "installation-42"
		}
		return "" // anonymous
	}
	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithPartition(installation)).Client()
	show(client, origin.URL+"/repos/o/r", "Authorization", "Bearer inst42-token-of-10:00")
	show(client, origin.URL+"/repos/o/r", "Authorization", "Bearer inst42-token-of-11:00")
	show(client, origin.URL+"/repos/o/r") // anonymous: another partition
	// Output:
	// 200 miss {"path":"/repos/o/r"}
	// 200 revalidated {"path":"/repos/o/r"}
	// 200 miss {"path":"/repos/o/r"}
}

// ResultOf tells a revalidation (the body came from the store) from a miss
// and from a request that went around the store.
func ExampleResultOf() {
	origin := newExampleOrigin()
	defer origin.Close()
	client := etagcache.NewTransport(etagcache.NewMemoryStore(0)).Client()

	for _, inm := range []string{"", "", `"status-v1"`} {
		req, _ := http.NewRequest(http.MethodGet, origin.URL+"/status", nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm) // the caller's own condition
		}
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body) // a body is stored once read to the end
		resp.Body.Close()
		fmt.Printf("%d %-11s %s: %s\n", resp.StatusCode, etagcache.ResultOf(resp),
			etagcache.HeaderCacheStatus, resp.Header.Get(etagcache.HeaderCacheStatus))
	}
	// Output:
	// 200 miss        Cache-Status: etagcache; fwd=uri-miss; stored
	// 200 revalidated Cache-Status: etagcache; fwd=stale; fwd-status=304
	// 304 bypass      Cache-Status: etagcache; fwd=bypass
}

// Purge drops every stored variant of one URL, for every user: the next
// request is a full fetch.
func ExampleTransport_Purge() {
	origin := newExampleOrigin()
	defer origin.Close()
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0))
	client := tr.Client()

	show(client, origin.URL+"/doc")
	if err := tr.Purge(context.Background(), origin.URL+"/doc"); err != nil {
		fmt.Println(err)
	}
	show(client, origin.URL+"/doc")
	show(client, origin.URL+"/doc")
	// Output:
	// 200 miss {"path":"/doc"}
	// 200 miss {"path":"/doc"}
	// 200 revalidated {"path":"/doc"}
}

// Stats counts what the transport did; Revalidated / Requests is the share
// of requests whose body did not cross the network.
func ExampleTransport_Stats() {
	origin := newExampleOrigin()
	defer origin.Close()
	tr := etagcache.NewTransport(etagcache.NewMemoryStore(0))
	for range 4 {
		resp, err := tr.Client().Get(origin.URL + "/feed")
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	st := tr.Stats()
	fmt.Printf("requests %d, stored %d, revalidated %d, bytes served from the store %d\n",
		st.Requests, st.Stored, st.Revalidated, st.BytesServed)
	fmt.Printf("revalidation ratio %.2f\n", float64(st.Revalidated)/float64(st.Requests))
	// Output:
	// requests 4, stored 1, revalidated 3, bytes served from the store 48
	// revalidation ratio 0.75
}

// CloseIdleConnections reaches the base transport, so a client built on
// the cache releases its connections as a plain one does.
func ExampleTransport_CloseIdleConnections() {
	origin := newExampleOrigin()
	defer origin.Close()
	base := &http.Transport{}
	client := etagcache.NewTransport(etagcache.NewMemoryStore(0), etagcache.WithBase(base)).Client()
	show(client, origin.URL+"/x")
	client.CloseIdleConnections() // calls tr.CloseIdleConnections, then base's
	show(client, origin.URL+"/x") // a new connection; the entry is still there
	// Output:
	// 200 miss {"path":"/x"}
	// 200 revalidated {"path":"/x"}
}
