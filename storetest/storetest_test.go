package storetest_test

import (
	"testing"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/storetest"
)

// The suite as a store's own tests use it (the module's stores run it from
// their packages, with the hooks they need).
func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) etagcache.Store { return etagcache.NewMemoryStore(0) })
}
