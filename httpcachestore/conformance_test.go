package httpcachestore_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/gregjones/httpcache"
	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/httpcachestore"
	"github.com/etagcache/etagcache/storetest"
)

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			var mu sync.Mutex
			caches := map[etagcache.Store]httpcache.Cache{}
			storetest.Run(t, func(t *testing.T) etagcache.Store {
				c := b.new(t)
				s := httpcachestore.New(c)
				mu.Lock()
				caches[s] = c
				mu.Unlock()
				return s
			}, storetest.WithDamage(func(t *testing.T, s etagcache.Store, key, variant string) {
				mu.Lock()
				c := caches[s]
				mu.Unlock()
				k := httpcachestore.EntryKey(key, variant)
				v, ok := c.Get(k)
				require.True(t, ok, "no entry record to damage")
				v = bytes.Clone(v) // a memory cache's value is shared with the entries handed out
				v[len(v)/2] ^= 1
				c.Set(k, v)
			}))
		})
	}
}
