package redisstore

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/redis/go-redis/v9"

	"github.com/etagcache/etagcache"
)

const (
	// recordVersion is the first byte of every header record.
	recordVersion = 1
	digestLen     = sha256.Size
	checksumLen   = 4
	// recordHead is what precedes the encoded metadata: version, body
	// digest, body length.
	recordHead = 1 + digestLen + 8

	// keyDomain is hashed in front of every resource key, so the digests
	// are specific to this store and to this version of its layout.
	keyDomain = "etagcache/redisstore/1\x00"
)

// emptyDigest is the SHA-256 of the empty body, the only digest a record
// of an empty body may name.
var emptyDigest = sha256.Sum256(nil)

// castagnoli is the CRC-32C table (computed in hardware on common CPUs).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// headerKey returns the Redis key of the hash holding the header records of
// resource key: the prefix, then a digest of the key in a hash tag, so that
// every record of the resource is on one Cluster slot. 128 bits of SHA-256
// keep the key short and collisions out of reach.
func headerKey(prefix, key string) string {
	h := sha256.New()
	h.Write([]byte(keyDomain))
	h.Write([]byte(key))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	b := make([]byte, 0, len(prefix)+2+32+3)
	b = append(b, prefix...)
	b = append(b, '{')
	b = hex.AppendEncode(b, sum[:16])
	b = append(b, "}:h"...)
	return string(b)
}

// bodyKey returns the Redis key of the body with SHA-256 d.
func bodyKey(prefix string, d [digestLen]byte) string {
	b := make([]byte, 0, len(prefix)+2+2*digestLen)
	b = append(b, prefix...)
	b = append(b, "b:"...)
	b = hex.AppendEncode(b, d[:])
	return string(b)
}

// record is a decoded header record.
type record struct {
	digest  [digestLen]byte
	bodyLen uint64
	entry   *etagcache.Entry // Body is not set
}

// encodeRecord returns the header record of an entry whose body has SHA-256
// digest and length n, with metadata meta (etagcache.EncodeEntryMeta).
func encodeRecord(digest [digestLen]byte, n int, meta []byte) []byte {
	b := make([]byte, 0, recordHead+len(meta)+checksumLen)
	b = append(b, recordVersion)
	b = append(b, digest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	b = append(b, meta...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var errCorrupt = errors.New("redisstore: corrupt header record")

// decodeRecord parses a header record. The entry's fields may alias b.
func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) < recordHead+checksumLen {
		return r, fmt.Errorf("%w: %d bytes", errCorrupt, len(b))
	}
	n := len(b) - checksumLen
	if binary.BigEndian.Uint32(b[n:]) != crc32.Checksum(b[:n], castagnoli) {
		return r, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if b[0] != recordVersion {
		return r, fmt.Errorf("%w: unknown version %d", errCorrupt, b[0])
	}
	copy(r.digest[:], b[1:1+digestLen])
	r.bodyLen = binary.BigEndian.Uint64(b[1+digestLen : recordHead])
	if r.bodyLen == 0 && r.digest != emptyDigest {
		// There is no body to check it against: the digest is all there is.
		return r, fmt.Errorf("%w: empty body under another body's digest", errCorrupt)
	}
	e, err := etagcache.DecodeEntry(b[recordHead:n])
	if err != nil {
		return r, fmt.Errorf("%w: %w", errCorrupt, err)
	}
	if len(e.Body) != 0 {
		return r, fmt.Errorf("%w: body inside the metadata", errCorrupt)
	}
	r.entry = e
	return r, nil
}

// sha1Hex names a record's exact bytes for the compare-and-set scripts, the
// way Lua's redis.sha1hex does. It identifies, it does not protect.
func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

// tombField is the field of a resource's hash that holds its tombstone:
// the latest time (Unix ms, as a decimal string) the resource was
// invalidated at (see Store.Invalidate). The transport's variants are
// "", "u<hex>" or "p<hex>", optionally followed by "/<hex>" or "#partial":
// none starts with reservedPrefix, which the Store refuses in the variants
// it is given, so no variant can be this field.
const (
	tombField      = "~inv"
	reservedPrefix = "~"
)

// The scripts touch only KEYS[1], the resource's hash, so they run on one
// Cluster slot. Each compares the record it replaces or removes with what
// the caller read, by SHA-1 of its bytes, so nothing written meanwhile by
// another worker is lost. Those that write a header record leave the
// tombstone, and the expiry it needs, in place: a hash holding one keeps
// it at least as long as Invalidate set (or forever, like its entries,
// without a TTL).
var (
	// putScript: unless the tombstone is at or after ARGV[4] (the entry's
	// request time less the clock-skew margin, in ms), HSET KEYS[1]
	// ARGV[1] ARGV[2], and make the hash expire in ARGV[3] ms when > 0
	// (never sooner than it would: the tombstone's life may be longer).
	// Returns 1 if it wrote, 0 if the tombstone refused it.
	putScript = redis.NewScript(`
local t = redis.call('HGET', KEYS[1], '` + tombField + `')
if t and tonumber(t) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  if not t or redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
elseif t then
  redis.call('PERSIST', KEYS[1])
end
return 1`)

	// swapScript replaces field ARGV[1] by ARGV[3] only if its value has
	// SHA-1 ARGV[2]; the hash then expires in ARGV[4] ms when > 0 (never
	// sooner, with a tombstone). Returns 1 if it did.
	swapScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or redis.sha1hex(cur) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local ttl = tonumber(ARGV[4])
if ttl > 0 and (redis.call('HEXISTS', KEYS[1], '` + tombField + `') == 0 or redis.call('PTTL', KEYS[1]) < ttl) then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1`)

	// invalidateScript removes every field of KEYS[1] and leaves the
	// tombstone ARGV[1] (ms; a later one already there stays), expiring in
	// ARGV[2] ms.
	invalidateScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], '` + tombField + `')
local at = ARGV[1]
if cur and tonumber(cur) > tonumber(at) then at = cur end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '` + tombField + `', at)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

	// deleteScript removes every header record of KEYS[1]; a tombstone
	// stays, expiring in ARGV[1] ms.
	deleteScript = redis.NewScript(`
local t = redis.call('HGET', KEYS[1], '` + tombField + `')
redis.call('DEL', KEYS[1])
if t then
  redis.call('HSET', KEYS[1], '` + tombField + `', t)
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1`)

	// readScript returns field ARGV[1] of KEYS[1] and the hash's PTTL, or
	// nil when there is no such field.
	readScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
return {v, redis.call('PTTL', KEYS[1])}`)

	// dropScript removes field ARGV[1] only if its value has SHA-1 ARGV[2].
	// A hash left with a tombstone alone, and no expiry, expires in ARGV[3]
	// ms.
	dropScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur or redis.sha1hex(cur) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], '` + tombField + `') == 1 and redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1`)
)
