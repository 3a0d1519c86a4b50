package etagcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// openTestBolt opens a store in a fresh temporary directory and closes it
// when the test ends.
func openTestBolt(t testing.TB, opts ...BoltOption) (*BoltStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := OpenBoltStore(path, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

// boltTestEntry returns an entry whose X-Body-Sha256 header is the digest
// of body.
func boltTestEntry(body []byte, kv ...string) *Entry {
	sum := sha256.Sum256(body)
	h := http.Header{"X-Body-Sha256": {hex.EncodeToString(sum[:])}, "Etag": {`"v1"`}}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &Entry{
		Status: 200, Header: h, Body: body,
		VaryNames: []string{"Accept"}, VaryDigest: sum[:8],
		RequestTime:  time.Unix(1700000000, 1),
		ResponseTime: time.Unix(1700000000, 2),
	}
}

// requireWhole fails unless the body of e has the digest its header records.
func requireWhole(t testing.TB, e *Entry) {
	t.Helper()
	sum := sha256.Sum256(e.Body)
	require.Equal(t, e.Header.Get("X-Body-Sha256"), hex.EncodeToString(sum[:]), "torn entry: body does not match its recorded digest")
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	return b[:n]
}

func TestBoltStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t)
	long := strings.Repeat("https://example.com/very/long/path?", 3000) // > bbolt's 32 KiB key limit
	cases := []struct{ key, variant string }{
		{"https://example.com/a", ""},
		{"https://example.com/a", "v2"},
		{long, strings.Repeat("x", 40000)},
		{"key\x00with\x00nul", "variant\x00"},
		{"key", "with\x00nul\x00variant"},
	}
	for i, c := range cases {
		_, err := s.Get(ctx, c.key, c.variant)
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, s.Put(ctx, c.key, c.variant, boltTestEntry([]byte(fmt.Sprint("body ", i)))))
	}
	require.NoError(t, s.Put(ctx, "empty", "", boltTestEntry(nil)))
	// Big enough that neither bucket is inline, so values live in the mmap.
	bigBody := randomBytes(rand.New(rand.NewPCG(1, 1)), 100_000)
	big := boltTestEntry(bigBody, "X-Pad", strings.Repeat("p", 5000))
	require.NoError(t, s.Put(ctx, "big", "", big))
	require.Equal(t, len(cases)+2, s.Len())

	var got []*Entry
	for i, c := range cases {
		want := boltTestEntry([]byte(fmt.Sprint("body ", i)))
		e, err := s.Get(ctx, c.key, c.variant)
		require.NoError(t, err)
		assert.Equal(t, want.Status, e.Status)
		assert.Equal(t, want.Header, e.Header)
		assert.Equal(t, want.Body, e.Body)
		assert.Equal(t, want.VaryNames, e.VaryNames)
		assert.Equal(t, want.VaryDigest, e.VaryDigest)
		assert.True(t, want.RequestTime.Equal(e.RequestTime))
		assert.True(t, want.ResponseTime.Equal(e.ResponseTime))
		got = append(got, e)
	}
	e, err := s.Get(ctx, "empty", "")
	require.NoError(t, err)
	assert.Empty(t, e.Body)
	requireWhole(t, e)
	e, err = s.Get(ctx, "big", "")
	require.NoError(t, err)
	got = append(got, e)

	// Returned entries are copies: they outlive the transaction and the
	// file's memory map.
	require.NoError(t, s.Close())
	for i, e := range got[:len(cases)] {
		assert.Equal(t, fmt.Sprint("body ", i), string(e.Body))
	}
	for _, e := range got {
		requireWhole(t, e)
		sum := sha256.Sum256(e.Body)
		assert.Equal(t, sum[:8], e.VaryDigest)
	}
	assert.Equal(t, bigBody, got[len(got)-1].Body)
}

func TestBoltStoreCreatesPrivateFileAndFolders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a", "b", "cache.db")
	s, err := OpenBoltStore(path)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	for _, d := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "a", "b")} {
		fi, err := os.Stat(d)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), d)
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// Reopening an existing store works and keeps its entries.
	s, err = OpenBoltStore(path)
	require.NoError(t, err)
	require.NoError(t, s.Put(context.Background(), "k", "", boltTestEntry([]byte("x"))))
	require.NoError(t, s.Close())
	s, err = OpenBoltStore(path)
	require.NoError(t, err)
	defer s.Close()
	e, err := s.Get(context.Background(), "k", "")
	require.NoError(t, err)
	assert.Equal(t, "x", string(e.Body))
}

// writeBoltFile makes a bbolt database at path and runs fn in a write
// transaction on it.
func writeBoltFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

func TestBoltStoreRefusesFilesThatAreNotStores(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(text, []byte("my precious notes\n"), 0o644))
	bigText := filepath.Join(dir, "big.txt")
	require.NoError(t, os.WriteFile(bigText, bytes.Repeat([]byte("not a database\n"), 2000), 0o644))
	foreign := filepath.Join(dir, "other.db")
	writeBoltFile(t, foreign, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("settings"))
		if err != nil {
			return err
		}
		return b.Put([]byte("theme"), []byte("dark"))
	})
	newer := filepath.Join(dir, "newer.db")
	s, err := OpenBoltStore(newer)
	require.NoError(t, err)
	require.NoError(t, s.Put(context.Background(), "k", "", boltTestEntry([]byte("x"))))
	require.NoError(t, s.Close())
	writeBoltFile(t, newer, func(tx *bolt.Tx) error {
		return tx.Bucket(boltSchemaBucket).Put(boltVersionKey, binary.BigEndian.AppendUint64(nil, 99))
	})

	for _, c := range []struct{ path, want string }{
		{text, "not a bbolt database"},
		{bigText, "not a bbolt database"},
		{foreign, "another program"},
		{newer, "schema version 99, this etagcache supports version 3"},
	} {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			before, err := os.ReadFile(c.path)
			require.NoError(t, err)
			s, err := OpenBoltStore(c.path)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, ErrIncompatibleFile)
			assert.Contains(t, err.Error(), c.path)
			assert.Contains(t, err.Error(), c.want)
			after, err := os.ReadFile(c.path)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(before, after), "file was modified")
		})
	}

	// An empty file and an empty bbolt database are taken over.
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	emptyBolt := filepath.Join(dir, "empty.db")
	writeBoltFile(t, emptyBolt, func(*bolt.Tx) error { return nil })
	for _, p := range []string{empty, emptyBolt} {
		s, err := OpenBoltStore(p)
		require.NoError(t, err, p)
		require.NoError(t, s.Put(context.Background(), "k", "", boltTestEntry([]byte("x"))))
		require.NoError(t, s.Close())
	}
}

// Two stores share a file; an operation that cannot get the lock file in
// time fails with ErrStoreLocked, and the store works again once it can.
func TestBoltStoreLockTimeout(t *testing.T) {
	ctx := context.Background()
	s, path := openTestBolt(t)
	s2, err := OpenBoltStore(path, WithBoltLockTimeout(200*time.Millisecond))
	require.NoError(t, err, "a second store on the same file")
	defer s2.Close()
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry([]byte("x"))))
	boltFlush(t, s)
	e, err := s2.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, "x", string(e.Body))

	held, err := lockBolt(ctx, path+".lock", true, time.Second)
	require.NoError(t, err)
	start := time.Now()
	err = s2.Delete(ctx, "k")
	elapsed := time.Since(start)
	require.ErrorIs(t, err, ErrStoreLocked)
	assert.Contains(t, err.Error(), "in use")
	assert.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
	assert.Less(t, elapsed, 2*time.Second)
	held.release()

	require.NoError(t, s2.Delete(ctx, "k"))
	_, err = s.Get(ctx, "k", "")
	require.ErrorIs(t, err, ErrNotFound, "the other store's Delete is seen")
}

func TestBoltStoreCloseIsIdempotentAndFinal(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry([]byte("x"))))
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.Get(ctx, "k", "")
	assert.ErrorIs(t, err, ErrStoreClosed)
	assert.ErrorIs(t, s.Put(ctx, "k", "", boltTestEntry([]byte("y"))), ErrStoreClosed)
	assert.ErrorIs(t, s.UpdateHeader(ctx, "k", "", boltTestEntry(nil)), ErrStoreClosed)
	assert.ErrorIs(t, s.Delete(ctx, "k"), ErrStoreClosed)
	assert.Equal(t, 1, s.Len())
}

func TestBoltStoreDeleteRemovesAllVariants(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t)
	for _, kv := range [][2]string{{"k", ""}, {"k", "a"}, {"k", "b"}, {"k2", ""}, {"k\x00", ""}} {
		require.NoError(t, s.Put(ctx, kv[0], kv[1], boltTestEntry([]byte(kv[0]+kv[1]))))
	}
	require.NoError(t, s.Delete(ctx, "k"))
	for _, v := range []string{"", "a", "b"} {
		_, err := s.Get(ctx, "k", v)
		require.ErrorIs(t, err, ErrNotFound)
	}
	for _, k := range []string{"k2", "k\x00"} {
		e, err := s.Get(ctx, k, "")
		require.NoError(t, err)
		assert.Equal(t, k, string(e.Body))
	}
	assert.Equal(t, 2, s.Len())

	// Deleting or updating what is not there writes nothing.
	before := s.writeTxs.Load()
	require.NoError(t, s.Delete(ctx, "k"))
	require.ErrorIs(t, s.UpdateHeader(ctx, "k", "a", boltTestEntry(nil)), ErrNotFound)
	assert.Equal(t, before, s.writeTxs.Load())
}

func TestBoltStoreEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	body := make([]byte, 10_000)
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := OpenBoltStore(path, WithBoltMaxBytes(35_000))
	require.NoError(t, err)
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, s.Put(ctx, k, "", boltTestEntry(body)))
	}
	_, err = s.Get(ctx, "a", "") // a is now more recent than b
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "d", "", boltTestEntry(body)))
	boltFlush(t, s) // eviction happens as entries are written
	has := func(s *BoltStore, k string) bool {
		_, err := s.Get(ctx, k, "")
		require.True(t, err == nil || errors.Is(err, ErrNotFound), err)
		return err == nil
	}
	assert.False(t, has(s, "b"), "b was least recently used")
	for _, k := range []string{"a", "c", "d"} {
		assert.True(t, has(s, k), k)
	}
	assert.LessOrEqual(t, s.Size(), int64(35_000))

	// Use c, then reopen: the recency of Gets survives Close.
	require.NoError(t, s.Close())
	s, err = OpenBoltStore(path, WithBoltMaxBytes(35_000))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, 3, s.Len())
	for _, k := range []string{"d", "c"} { // order of use: a, d, c
		assert.True(t, has(s, k))
	}
	require.NoError(t, s.Put(ctx, "e", "", boltTestEntry(body)))
	boltFlush(t, s)
	assert.False(t, has(s, "a"), "a was least recently used before the restart")
	assert.True(t, has(s, "c"))

	// An entry larger than the bound is not kept, and replaces nothing.
	require.NoError(t, s.Put(ctx, "huge", "", boltTestEntry(make([]byte, 40_000))))
	boltFlush(t, s)
	assert.False(t, has(s, "huge"))
	assert.Equal(t, 3, s.Len())

	// Reopening with a smaller bound evicts down to it.
	require.NoError(t, s.Close())
	s, err = OpenBoltStore(path, WithBoltMaxBytes(15_000))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, 1, s.Len())
	assert.True(t, has(s, "c"), "c was used last")
}

func TestBoltStoreHonoursContext(t *testing.T) {
	s, _ := openTestBolt(t)
	require.NoError(t, s.Put(context.Background(), "k", "", boltTestEntry([]byte("x"))))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := s.writeTxs.Load()
	_, err := s.Get(ctx, "k", "")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Put(ctx, "k", "", boltTestEntry([]byte("y"))), context.Canceled)
	assert.ErrorIs(t, s.UpdateHeader(ctx, "k", "", boltTestEntry(nil)), context.Canceled)
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)
	assert.Equal(t, before, s.writeTxs.Load())
	e, err := s.Get(context.Background(), "k", "")
	require.NoError(t, err)
	assert.Equal(t, "x", string(e.Body))
}

// selfCheckingEntry returns an entry whose body and metadata can each be
// checked on their own: the body ends in the digest of what precedes it and
// names key and variant; the X-A and X-B headers carry the same token, and
// VaryDigest is the digest of it.
func selfCheckingEntry(rng *rand.Rand, key, variant string) *Entry {
	payload := append([]byte(key+"\x00"+variant+"\x00"), randomBytes(rng, rng.IntN(20_000))...)
	sum := sha256.Sum256(payload)
	tok := fmt.Sprint(rng.Uint64())
	vd := sha256.Sum256([]byte(tok))
	return &Entry{Status: 200, Header: http.Header{"X-A": {tok}, "X-B": {tok}}, Body: append(payload, sum[:]...), VaryDigest: vd[:]}
}

func checkSelfCheckingEntry(e *Entry, key, variant string) error {
	n := len(e.Body) - sha256.Size
	if n < 0 {
		return errors.New("body too short")
	}
	if sum := sha256.Sum256(e.Body[:n]); !bytes.Equal(sum[:], e.Body[n:]) {
		return errors.New("torn body")
	}
	if !bytes.HasPrefix(e.Body, []byte(key+"\x00"+variant+"\x00")) {
		return errors.New("body of another entry")
	}
	tok := e.Header.Get("X-A")
	if vd := sha256.Sum256([]byte(tok)); tok == "" || tok != e.Header.Get("X-B") || !bytes.Equal(vd[:], e.VaryDigest) || e.Status != 200 {
		return errors.New("torn metadata")
	}
	return nil
}

func TestBoltStoreConcurrentUse(t *testing.T) {
	s, path := openTestBolt(t, WithBoltMaxBytes(200_000)) // small, so eviction runs too
	keys, variants := []string{"k0", "k1", "k2", "k3", "k4"}, []string{"", "gzip"}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			ctx := context.Background()
			for range 150 {
				k, v := keys[rng.IntN(len(keys))], variants[rng.IntN(len(variants))]
				var err error
				switch op := rng.IntN(10); {
				case op < 4:
					var e *Entry
					if e, err = s.Get(ctx, k, v); err == nil {
						err = checkSelfCheckingEntry(e, k, v)
					}
				case op < 7:
					err = s.Put(ctx, k, v, selfCheckingEntry(rng, k, v))
				case op < 9:
					// New metadata for the body read, as after a 304.
					var got *Entry
					if got, err = s.Get(ctx, k, v); err == nil {
						e := selfCheckingEntry(rng, k, v)
						e.Body = got.Body
						err = s.UpdateHeader(ctx, k, v, e)
					}
				default:
					err = s.Delete(ctx, k)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					errs <- fmt.Errorf("%s/%s: %w", k, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.LessOrEqual(t, s.Size(), int64(200_000))
	var n int
	boltFlush(t, s)
	boltView(t, path, func(tx *bolt.Tx) error {
		n = tx.Bucket(boltMetaBucket).Stats().KeyN
		return nil
	})
	assert.Equal(t, s.Len(), n, "index and file disagree")
}

func TestBoltStoreCloseWhileInUse(t *testing.T) {
	s, _ := openTestBolt(t)
	started := make(chan struct{}, 8)
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			ctx := context.Background()
			for i := 0; ; i++ {
				if i == 10 {
					started <- struct{}{}
				}
				k := fmt.Sprint("k", rng.IntN(4))
				var err error
				switch rng.IntN(4) {
				case 0:
					err = s.Put(ctx, k, "", selfCheckingEntry(rng, k, ""))
				case 1:
					err = s.UpdateHeader(ctx, k, "", selfCheckingEntry(rng, k, ""))
				case 2:
					err = s.Delete(ctx, k)
				default:
					var e *Entry
					if e, err = s.Get(ctx, k, ""); err == nil {
						err = checkSelfCheckingEntry(e, k, "")
					}
				}
				if errors.Is(err, ErrStoreClosed) {
					errs <- nil
					return
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
			}
		}()
	}
	for range 8 {
		<-started
	}
	require.NoError(t, s.Close())
	for range 8 {
		require.NoError(t, <-errs)
	}
}

// The header of one representation never lands on the body of another: an
// update whose validators no longer match the stored entry writes nothing.
func TestBoltUpdateHeaderRefusesAnotherRepresentation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestBolt(t)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry([]byte("version 1"), "Etag", `"v1"`)))
	boltFlush(t, s)
	writes := s.writeTxs.Load()
	err := s.UpdateHeader(ctx, "k", "", boltTestEntry(nil, "Etag", `"v2"`, "X-New", "1"))
	require.ErrorIs(t, err, ErrNotFound)
	e, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, `"v1"`, e.Header.Get("Etag"))
	assert.Empty(t, e.Header.Get("X-New"))
	requireWhole(t, e)
	assert.Equal(t, writes, s.writeTxs.Load(), "a refused update committed a write")

	// A weak match is the same representation.
	require.NoError(t, s.UpdateHeader(ctx, "k", "", boltTestEntry([]byte("version 1"), "Etag", `W/"v1"`, "X-New", "1")))
	e, err = s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, "1", e.Header.Get("X-New"))
	assert.Equal(t, "version 1", string(e.Body))
}

// The update names the body it confirms, and the store finds out whether
// it holds it each way it can: the Put queued in the same transaction, the
// entry cache, the file's bytes (cache off, or another process wrote); for
// an inline and a chunked body, against a body of the same length.
func TestBoltUpdateHeaderChecksTheBody(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{100, 200_000} {
		a, b := bytes.Repeat([]byte("a"), size), bytes.Repeat([]byte("b"), size)
		for _, tc := range []struct {
			name    string
			opts    []BoltOption
			flushed bool
		}{
			{"queued", nil, false},
			{"cached", nil, true},
			{"file", []BoltOption{WithBoltCache(-1)}, true},
		} {
			t.Run(fmt.Sprint(tc.name, "-", size), func(t *testing.T) {
				s, _ := openTestBolt(t, tc.opts...)
				put := func(body []byte) {
					require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(body)))
					if tc.flushed {
						boltFlush(t, s)
					}
				}
				put(a)
				got, err := s.Get(ctx, "k", "")
				require.NoError(t, err)
				put(b) // same ETag, same length
				writes := s.writeTxs.Load()
				require.ErrorIs(t, s.UpdateHeader(ctx, "k", "", boltTestEntry(got.Body, "X-New", "1")), ErrNotFound)
				if tc.flushed {
					assert.Equal(t, writes, s.writeTxs.Load(), "a refused update committed a write")
				}
				e, err := s.Get(ctx, "k", "")
				require.NoError(t, err)
				assert.Equal(t, b, e.Body)
				assert.Empty(t, e.Header.Get("X-New"))

				// A copy of the stored body is that body.
				require.NoError(t, s.UpdateHeader(ctx, "k", "", boltTestEntry(bytes.Clone(b), "X-New", "2")))
				e, err = s.Get(ctx, "k", "")
				require.NoError(t, err)
				assert.Equal(t, "2", e.Header.Get("X-New"))
				requireWhole(t, e)
			})
		}
		t.Run(fmt.Sprint("other process-", size), func(t *testing.T) {
			s, path := openTestBolt(t)
			require.NoError(t, s.Put(ctx, "k", "", boltTestEntry(a)))
			boltFlush(t, s)
			got, err := s.Get(ctx, "k", "") // cached
			require.NoError(t, err)
			other, err := OpenBoltStore(path)
			require.NoError(t, err)
			defer other.Close()
			require.NoError(t, other.Put(ctx, "k", "", boltTestEntry(b)))
			boltFlush(t, other)
			require.ErrorIs(t, s.UpdateHeader(ctx, "k", "", boltTestEntry(got.Body, "X-New", "1")), ErrNotFound)
			e, err := other.Get(ctx, "k", "")
			require.NoError(t, err)
			assert.Equal(t, b, e.Body)
			assert.Empty(t, e.Header.Get("X-New"))
		})
	}
}
