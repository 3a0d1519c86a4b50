package etagcache_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/etagcache/etagcache"
)

// Clear empties a memory store: every resource is fetched again.
func ExampleMemoryStore_Clear() {
	origin := newExampleOrigin()
	defer origin.Close()
	store := etagcache.NewMemoryStore(8 << 20)
	client := etagcache.NewTransport(store).Client()

	show(client, origin.URL+"/a")
	show(client, origin.URL+"/b")
	fmt.Println(store.Len(), "entries")
	store.Clear()
	fmt.Println(store.Len(), "entries")
	show(client, origin.URL+"/a")
	// Output:
	// 200 miss {"path":"/a"}
	// 200 miss {"path":"/b"}
	// 2 entries
	// 0 entries
	// 200 miss {"path":"/a"}
}

// A cache file outlives the process: a second run's first request is a
// revalidation, not a download. If the file cannot be opened, fall back
// to memory rather than failing: the cache only saves requests.
func ExampleOpenBoltStore() {
	origin := newExampleOrigin()
	defer origin.Close()
	dir, err := os.MkdirTemp("", "etagcache-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mytool", "http.db") // usually under os.UserCacheDir()

	for run := 1; run <= 2; run++ {
		var store etagcache.Store
		bolt, err := etagcache.OpenBoltStore(path)
		if err != nil {
			fmt.Println("cache unavailable, running uncached:", err)
			store = etagcache.NewMemoryStore(0)
		} else {
			store = bolt
		}
		fmt.Print("run ", run, ": ")
		show(etagcache.NewTransport(store).Client(), origin.URL+"/releases")
		if bolt != nil {
			bolt.Close()
		}
	}
	// Output:
	// run 1: 200 miss {"path":"/releases"}
	// run 2: 200 revalidated {"path":"/releases"}
}

// WithBoltMaxBytes bounds what the file holds; the least recently used
// entries go first.
func ExampleWithBoltMaxBytes() {
	dir, _ := os.MkdirTemp("", "etagcache-example-")
	defer os.RemoveAll(dir)
	store, err := etagcache.OpenBoltStore(filepath.Join(dir, "http.db"), etagcache.WithBoltMaxBytes(256<<20))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	fmt.Println(store.Len(), "entries,", store.Size(), "bytes")
	// Output: 0 entries, 0 bytes
}

// Processes take turns on the file one short transaction at a time; one
// that keeps it busy for longer than WithBoltLockTimeout makes an operation
// fail with ErrStoreLocked (the transport then goes to the origin), or
// OpenBoltStore itself, which a tool can report or answer by running
// uncached.
func ExampleWithBoltLockTimeout() {
	dir, _ := os.MkdirTemp("", "etagcache-example-")
	defer os.RemoveAll(dir)
	store, err := etagcache.OpenBoltStore(filepath.Join(dir, "http.db"),
		etagcache.WithBoltLockTimeout(2*time.Second))
	switch {
	case errors.Is(err, etagcache.ErrStoreLocked):
		fmt.Println("another run holds the cache; going on without it")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("cache open")
		store.Close()
	}
	// Output: cache open
}

// WithBoltCache sets how much the store keeps decoded in memory, so that a
// revalidation reads nothing from the file; a negative size turns it off
// (every revalidation then copies the body out of the file).
func ExampleWithBoltCache() {
	origin := newExampleOrigin()
	defer origin.Close()
	dir, _ := os.MkdirTemp("", "etagcache-example-")
	defer os.RemoveAll(dir)
	store, err := etagcache.OpenBoltStore(filepath.Join(dir, "http.db"), etagcache.WithBoltCache(-1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	client := etagcache.NewTransport(store).Client()
	show(client, origin.URL+"/big")
	show(client, origin.URL+"/big")
	// Output:
	// 200 miss {"path":"/big"}
	// 200 revalidated {"path":"/big"}
}
