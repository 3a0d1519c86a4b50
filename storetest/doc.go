// Package storetest is a conformance suite for etagcache.Store
// implementations: it checks, against a real store, everything the
// etagcache transport relies on.
//
// Call Run from a test of the store's package, with a function that makes
// a new, empty store for one subtest:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) etagcache.Store {
//			s, err := mystore.Open(t.TempDir())
//			require.NoError(t, err)
//			t.Cleanup(func() { s.Close() })
//			return s
//		}, storetest.WithDamage(func(t *testing.T, s etagcache.Store, key, variant string) {
//			// flip a byte of the record mystore keeps for key and variant
//		}))
//	}
//
// Run checks that
//
//   - Get of something never stored reports etagcache.ErrNotFound;
//   - Put then Get returns every field as it was given;
//   - the store never modifies an entry it was given or has handed out;
//   - Delete removes every variant of a key and nothing else, and deleting
//     nothing is not an error;
//   - a header update (when the store is an etagcache.HeaderUpdater) keeps
//     the body, and writes nothing, reporting ErrNotFound, unless the store
//     still holds the body and the validators the update names;
//   - under concurrent Put, Get, UpdateHeader and Delete on few keys, every
//     Get returns a whole entry, never fields of two;
//   - a cancelled context is an error, not a panic;
//   - empty and large (17 MiB) bodies round-trip;
//   - a damaged record is a miss, and is removed (with WithDamage);
//   - two transports sharing the store, racing two variants of a resource
//     that share one ETag, never serve one variant's body for the other
//     (RunSharedValidator);
//   - for an etagcache.Invalidator: Invalidate removes every variant of a
//     key and nothing else; a later Put under the key of an entry
//     requested before the invalidation (or at the zero time) is dropped
//     without an error and leaves what the slot holds, while one requested
//     an hour after it is stored; Delete leaves the invalidation in force,
//     an earlier one does not undo it and a later one moves it on; a
//     header update of an entry it removed finds nothing; after 4,200
//     invalidations of other keys the first still holds; and under
//     concurrent Invalidate, Put, Get and UpdateHeader, no Get that began
//     after an Invalidate returned finds an entry requested before it.
//
// Run it under go test -race: the concurrent subtests are meant for it. A
// store that can be opened twice onto the same data (a file, a server)
// should also call RunSharedValidator, and, if it is an Invalidator,
// RunSharedInvalidation, with two such handles.
package storetest
