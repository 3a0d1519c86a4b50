package httpcachestore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"

	"github.com/etagcache/etagcache"
	"github.com/gregjones/httpcache"
)

const (
	// keyPrefix starts every cache key the store uses.
	keyPrefix = "etagcache/"
	// hashDomain is hashed in front of every key and variant, so the
	// digests are specific to this store and to this version of its format.
	hashDomain = "etagcache/httpcachestore/1\x00"

	// recordVersion is the first byte of every record.
	recordVersion = 1
	tokenLen      = 16
	digestLen     = sha256.Size

	// maxIndexed bounds the variants listed in a key's index record (and so
	// the size of the record rewritten when a variant is added).
	maxIndexed = 512

	kindEntry = 'e' // token | encoded entry | CRC-32C, per key and variant
	kindGen   = 'g' // the key's current token
	kindIndex = 'i' // digests of the key's entry records
)

type token [tokenLen]byte

// store is the etagcache.Store over an httpcache.Cache; see the package
// documentation for its records and invalidation scheme.
type store struct {
	c httpcache.Cache
}

// New returns an etagcache.Store that keeps its entries in c. The store is
// safe for concurrent use when c is. It implements neither
// etagcache.HeaderUpdater nor etagcache.Invalidator (see the package
// documentation: an invalidation through one Transport does not win over
// another's write of an older response).
func New(c httpcache.Cache) etagcache.Store {
	if c == nil {
		panic("httpcachestore: nil httpcache.Cache")
	}
	return &store{c: c}
}

// Get implements etagcache.Store.
func (s *store) Get(ctx context.Context, key, variant string) (*etagcache.Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tok, ok := s.token(key)
	if !ok {
		// Entries left without a generation are unreachable; they are
		// reclaimed by Delete or overwritten by Put.
		return nil, etagcache.ErrNotFound
	}
	ek := entryKey(entryDigest(key, variant))
	b, ok := s.c.Get(ek)
	if !ok {
		return nil, etagcache.ErrNotFound
	}
	if !checksummed(b) || b[0] != recordVersion || !bytes.Equal(b[1:1+tokenLen], tok[:]) {
		// Torn or corrupt (some backends, diskcache among them, can return
		// a value while another process rewrites it), or stale: written
		// before the key's last Delete.
		s.c.Delete(ek)
		return nil, etagcache.ErrNotFound
	}
	// The Body returned aliases b, which for some backends
	// (httpcache.MemoryCache) is the cached value itself. Neither the
	// store nor the transport ever modifies either.
	e, err := etagcache.DecodeEntry(b[1+tokenLen : len(b)-checksumLen])
	if err != nil {
		s.c.Delete(ek)
		return nil, etagcache.ErrNotFound
	}
	return e, nil
}

// Put implements etagcache.Store.
func (s *store) Put(ctx context.Context, key, variant string, e *etagcache.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e == nil {
		return errors.New("httpcachestore: Put of a nil entry")
	}
	tok, ok := s.token(key)
	if !ok {
		tok = newToken()
		s.c.Set(genKey(key), append([]byte{recordVersion}, tok[:]...))
	}
	d := entryDigest(key, variant)
	// Index before writing the entry, so that an entry is (but for lost
	// races) always listed for Delete to reclaim.
	s.index(key, d)
	enc := etagcache.EncodeEntry(e)
	rec := make([]byte, 0, 1+tokenLen+len(enc)+checksumLen)
	rec = append(rec, recordVersion)
	rec = append(rec, tok[:]...)
	rec = append(rec, enc...)
	rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(rec, castagnoli))
	s.c.Set(entryKey(d), rec)
	return nil
}

// Delete implements etagcache.Store.
func (s *store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// This alone invalidates every variant; the rest reclaims space.
	s.c.Delete(genKey(key))
	ik := indexKey(key)
	if b, ok := s.c.Get(ik); ok {
		for _, d := range parseIndex(b) {
			s.c.Delete(entryKey(d))
		}
	}
	s.c.Delete(ik)
	return nil
}

// castagnoli is the CRC-32C table, computed in hardware on common CPUs, so
// checking a record costs little next to reading it.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const checksumLen = 4

// checksummed reports whether an entry record is whole: long enough, and
// ending in the CRC-32C of what precedes it.
func checksummed(b []byte) bool {
	if len(b) < 1+tokenLen+checksumLen {
		return false
	}
	n := len(b) - checksumLen
	return binary.BigEndian.Uint32(b[n:]) == crc32.Checksum(b[:n], castagnoli)
}

// token returns the key's current generation token, if it has one.
func (s *store) token(key string) (tok token, ok bool) {
	b, ok := s.c.Get(genKey(key))
	if !ok || len(b) != 1+tokenLen || b[0] != recordVersion {
		return tok, false
	}
	copy(tok[:], b[1:])
	return tok, true
}

// index adds d to the key's index record unless it is listed already. When
// the index is full, the oldest listed entry is deleted to make room.
func (s *store) index(key string, d [digestLen]byte) {
	ik := indexKey(key)
	b, _ := s.c.Get(ik)
	ds := parseIndex(b)
	for _, x := range ds {
		if x == d {
			return
		}
	}
	if len(ds) >= maxIndexed {
		n := len(ds) - maxIndexed + 1
		for _, x := range ds[:n] {
			s.c.Delete(entryKey(x))
		}
		ds = ds[n:]
	}
	// A fresh slice: b may be the backend's own copy of the value.
	rec := make([]byte, 0, 1+(len(ds)+1)*digestLen)
	rec = append(rec, recordVersion)
	for _, x := range ds {
		rec = append(rec, x[:]...)
	}
	rec = append(rec, d[:]...)
	s.c.Set(ik, rec)
}

// parseIndex returns the digests listed in an index record; a missing or
// corrupt record lists none.
func parseIndex(b []byte) [][digestLen]byte {
	if len(b) < 1 || b[0] != recordVersion || (len(b)-1)%digestLen != 0 {
		return nil
	}
	b = b[1:]
	ds := make([][digestLen]byte, len(b)/digestLen)
	for i := range ds {
		copy(ds[i][:], b[i*digestLen:])
	}
	return ds
}

func newToken() (t token) {
	// crypto/rand.Read never returns an error (it crashes the program if
	// the system's random source fails).
	rand.Read(t[:])
	return t
}

// keyDigest identifies a key, for its generation and index records.
func keyDigest(key string) [digestLen]byte {
	return digest('k', key, "")
}

// entryDigest identifies the entry record of a key and variant.
func entryDigest(key, variant string) [digestLen]byte {
	return digest(kindEntry, key, variant)
}

func digest(kind byte, key, variant string) [digestLen]byte {
	h := sha256.New()
	b := make([]byte, 0, len(hashDomain)+1+binary.MaxVarintLen64)
	b = append(b, hashDomain...)
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(key)))
	h.Write(b)
	io.WriteString(h, key)
	io.WriteString(h, variant)
	var d [digestLen]byte
	h.Sum(d[:0])
	return d
}

func cacheKey(kind byte, d [digestLen]byte) string {
	b := make([]byte, 0, len(keyPrefix)+2+2*digestLen)
	b = append(b, keyPrefix...)
	b = append(b, kind, '/')
	b = hex.AppendEncode(b, d[:])
	return string(b)
}

func entryKey(d [digestLen]byte) string { return cacheKey(kindEntry, d) }
func genKey(key string) string          { return cacheKey(kindGen, keyDigest(key)) }
func indexKey(key string) string        { return cacheKey(kindIndex, keyDigest(key)) }
