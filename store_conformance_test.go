package etagcache_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) etagcache.Store { return etagcache.NewMemoryStore(0) })
}

func TestBoltStoreConformance(t *testing.T) {
	for name, opts := range map[string][]etagcache.BoltOption{
		"cache":    nil,
		"no cache": {etagcache.WithBoltCache(-1)},
	} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) etagcache.Store {
				return openConformanceBolt(t, filepath.Join(t.TempDir(), "cache.db"), opts...)
			}, storetest.WithDamage(func(t *testing.T, s etagcache.Store, key, variant string) {
				require.NoError(t, etagcache.DamageBoltRecord(s.(*etagcache.BoltStore), key, variant))
			}))
		})
	}
}

// Two stores on one file, as two processes have: the second one's cache
// does not know what the first one wrote.
func TestBoltStoreSharedValidatorTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	storetest.RunSharedValidator(t, openConformanceBolt(t, path), openConformanceBolt(t, path),
		storetest.WithFlush(func(s etagcache.Store) error { return etagcache.FlushBolt(s.(*etagcache.BoltStore)) }))
}

// An invalidation through one handle wins over the other's Puts, queued
// (write-behind) or not.
func TestBoltStoreSharedInvalidationTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	storetest.RunSharedInvalidation(t, openConformanceBolt(t, path), openConformanceBolt(t, path),
		storetest.WithFlush(func(s etagcache.Store) error { return etagcache.FlushBolt(s.(*etagcache.BoltStore)) }))
}

func openConformanceBolt(t *testing.T, path string, opts ...etagcache.BoltOption) *etagcache.BoltStore {
	t.Helper()
	s, err := etagcache.OpenBoltStore(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
