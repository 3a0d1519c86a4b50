package etagcache_test

// Churn tests of this package's stores. Three Transports share one store
// (standing for three processes), four goroutines each, coalescing on, in
// the default mode and in freshness mode, 15,000 GETs per mode. They GET
// five resources whose variants share one ETag per version (tenants under
// Vary: X-Tenant; gzip and identity under Vary: Accept-Encoding, under
// nginx's missing Vary and under lighttpd's Vary on gzip only), and POST
// through the transports every 50th request. Every response must be the
// origin's body for its path, tenant and a coding the caller accepts, under
// its own ETag, no older than the version current when it was asked (in
// freshness mode: within the resource's lifetime, and never older than
// what a POST that had returned made), with no other request's Set-Cookie.
// internal/churntest has the details; redisstore runs the same on Redis.

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/internal/churntest"
)

// churnModes are the two modes each store is churned in.
var churnModes = []struct {
	name  string
	fresh bool
}{{"default", false}, {"fresh", true}}

// TestChurnMemoryStore: one MemoryStore shared by every transport, as a
// Redis is shared by a fleet.
func TestChurnMemoryStore(t *testing.T) {
	for _, m := range churnModes {
		t.Run(m.name, func(t *testing.T) {
			s := etagcache.NewMemoryStore(0)
			churntest.Run(t, churntest.Config{Fresh: m.fresh}, func(int) etagcache.Store { return s })
		})
	}
}

// TestChurnBoltStore: one file. In the default mode every transport uses
// one *BoltStore; in freshness mode the last transport has a handle of its
// own on the file, as another process would (the handles share through the
// lock file and its generation, not through memory).
func TestChurnBoltStore(t *testing.T) {
	for _, m := range churnModes {
		t.Run(m.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cache.db")
			open := func() etagcache.Store {
				s, err := etagcache.OpenBoltStore(path)
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, s.Close()) })
				return s
			}
			shared := open()
			var own etagcache.Store
			if m.fresh {
				own = open()
			}
			const workers = 3
			churntest.Run(t, churntest.Config{Fresh: m.fresh, Workers: workers}, func(w int) etagcache.Store {
				if own != nil && w == workers-1 {
					return own
				}
				return shared
			})
		})
	}
}
