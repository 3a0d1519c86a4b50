package etagcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The layout of a BoltStore file, schema version 3:
//
//	bucket "etagcache": "version" → uint64 big-endian (the schema marker),
//	                    "large:" | record key | body id → "" (see putLarge)
//	bucket "meta":      record key → meta record
//	bucket "body":      record key | body id → bucket: chunk number → chunk
//	bucket "inval":     key prefix → int64 Unix ns, "floor" → int64 Unix ns
//	                    (invalidations, see store_bbolt_inval.go; made by
//	                    the first Invalidate)
//
// A record key is SHA-256(key) | 0x00 | SHA-256(variant), 65 bytes whatever
// the length of key and variant, so all variants of a key share a prefix.
// A meta record is
//
//	CRC-32C of the rest but an inline body | last use (int64 Unix ns) |
//	body length (uint64) | CRC-32C of the body | body id (uint64) |
//	EncodeEntryMeta | inline body
//
// all big-endian. A body of at most boltInlineMax bytes is inline: it ends
// the meta record itself, and the body id is 0. A larger body is cut into
// chunks of at most boltChunk bytes, numbered from 0 (uint32 big-endian) in
// a bucket of their own, named by the record key and the body id, a random
// non-zero number drawn for each body written: a body is only ever written
// under a fresh id, and the meta record that names it is written last, so a
// reader never sees a meta record with another body's chunks. A bucket per
// body keeps the large chunks of one body out of the pages of others: bbolt
// rewrites a whole leaf page, values included, when it inserts a key into
// it. A small body inline costs one record, one leaf page to write, instead
// of two records in two random places of two trees and a bucket. The
// checksums are verified on every read: a record that fails is a miss and
// is removed.
//
// Any change to this layout that older code would misread must change
// boltSchemaVersion. Files of version 1 (no checksums) are emptied and
// upgraded when opened. Version 2 had no inline bodies (its records are
// records of version 3): its files are used as they are, and marked
// version 3 by the first write of an inline body. The "inval" bucket came
// later without a new version: older code reads and writes such a file
// correctly, ignoring the bucket (so its own writes are not checked
// against the invalidations of newer processes sharing the file, nor do
// its Deletes leave tombstones), and bbolt's compaction keeps it. A file
// without the bucket has no invalidations to remember.
var (
	boltSchemaBucket = []byte("etagcache")
	boltVersionKey   = []byte("version")
	boltMetaBucket   = []byte("meta")
	boltBodyBucket   = []byte("body")
	// boltLargeMark | record key | body id, in the schema bucket, marks the
	// chunks of a large body being written in several transactions.
	boltLargeMark = []byte("large:")
)

const (
	boltSchemaVersion = 3
	// boltInlineMax bounds the bodies kept inside their meta record: two
	// such records still share a 4 KiB page.
	boltInlineMax    = 1536
	boltMetaPrefix   = 4 + 8 + 8 + 4 + 8
	boltRecordKeyLen = 2*sha256.Size + 1
	boltBodyKeyLen   = boltRecordKeyLen + 8
	boltChunk        = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// boltMetaRecord is a decoded meta record (entry metadata still encoded).
type boltMetaRecord struct {
	used    int64
	bodyLen uint64
	bodyCRC uint32
	bodyID  uint64 // 0: the body is inline
	meta    []byte // EncodeEntryMeta
	body    []byte // the inline body
}

func (m *boltMetaRecord) append(b []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(m.used))
	b = binary.BigEndian.AppendUint64(b, m.bodyLen)
	b = binary.BigEndian.AppendUint32(b, m.bodyCRC)
	b = binary.BigEndian.AppendUint64(b, m.bodyID)
	b = append(b, m.meta...)
	binary.BigEndian.PutUint32(b[start:], crc32.Checksum(b[start+4:], castagnoli))
	if m.bodyID == 0 {
		b = append(b, m.body...) // under its own checksum, bodyCRC
	}
	return b
}

// bytes returns the record, in new memory (never aliasing m.meta or m.body).
func (m *boltMetaRecord) bytes() []byte {
	return m.append(make([]byte, 0, boltMetaPrefix+len(m.meta)+len(m.body)))
}

// boltBodyID draws the id of a body written in chunks: random, never 0,
// which marks an inline body.
func boltBodyID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// chunks is the number of body chunks.
func (m *boltMetaRecord) chunks() uint64 { return (m.bodyLen + boltChunk - 1) / boltChunk }

// parseBoltMetaRecord checks the record's checksum and splits it; meta and
// body alias v. An inline body is not checked here (see readBoltEntry): the
// record's checksum covers its length, so a body cut or grown fails it.
func parseBoltMetaRecord(v []byte) (boltMetaRecord, error) {
	if len(v) < boltMetaPrefix {
		return boltMetaRecord{}, fmt.Errorf("%w: meta record of %d bytes", ErrCorruptEntry, len(v))
	}
	m := boltMetaRecord{
		used:    int64(binary.BigEndian.Uint64(v[4:])),
		bodyLen: binary.BigEndian.Uint64(v[12:]),
		bodyCRC: binary.BigEndian.Uint32(v[20:]),
		bodyID:  binary.BigEndian.Uint64(v[24:]),
	}
	end := uint64(len(v))
	if m.bodyID == 0 {
		if m.bodyLen > end-boltMetaPrefix {
			return boltMetaRecord{}, fmt.Errorf("%w: meta record shorter than its inline body", ErrCorruptEntry)
		}
		end -= m.bodyLen
	}
	if crc32.Checksum(v[4:end], castagnoli) != binary.BigEndian.Uint32(v) {
		return boltMetaRecord{}, fmt.Errorf("%w: meta record fails its checksum", ErrCorruptEntry)
	}
	m.meta = v[boltMetaPrefix:end]
	if m.bodyID == 0 {
		m.body = v[end:]
	}
	return m, nil
}

// boltSize is what an entry counts against the size bound: the bytes of
// its records, keys and values, as bbolt stores them, plus bbolt's
// per-element header (16 bytes) for each, and the header of the body's
// bucket.
func boltSize(m *boltMetaRecord) int64 {
	if m.bodyID == 0 {
		return boltRecordKeyLen + int64(boltMetaPrefix+len(m.meta)) + 16 + int64(m.bodyLen)
	}
	n := int64(m.chunks())
	return boltRecordKeyLen + int64(boltMetaPrefix+len(m.meta)) + 16 + boltBodyKeyLen + 16 + 16 + int64(m.bodyLen) + n*(4+16)
}

func boltKeyPrefix(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return append(h[:], 0)
}

func boltRecordKey(key, variant string) []byte {
	h := sha256.Sum256([]byte(variant))
	return append(boltKeyPrefix(key), h[:]...)
}

func boltBodyKey(rk []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, boltBodyKeyLen), rk...), id)
}

func boltChunkKey(i uint64) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

// boltGet tells a missing key from an empty value, which Bucket.Get does not.
func boltGet(b *bolt.Bucket, k []byte) ([]byte, bool) {
	ck, v := b.Cursor().Seek(k)
	return v, bytes.Equal(ck, k)
}

// deleteBoltRecord removes the meta record of rk and every body stored
// under rk, whatever its body id.
func deleteBoltRecord(tx *bolt.Tx, rk []byte) error {
	if err := tx.Bucket(boltMetaBucket).Delete(rk); err != nil {
		return err
	}
	return deleteBoltBodies(tx, rk, nil)
}

// deleteBoltBodies removes the bodies whose key starts with prefix, but
// for keep.
func deleteBoltBodies(tx *bolt.Tx, prefix, keep []byte) error {
	bb := tx.Bucket(boltBodyBucket)
	var keys [][]byte
	c := bb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if !bytes.Equal(k, keep) {
			keys = append(keys, bytes.Clone(k))
		}
	}
	for _, k := range keys {
		err := bb.DeleteBucket(k)
		if errors.Is(err, berrors.ErrIncompatibleValue) { // not a bucket: damaged
			err = bb.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// putBoltChunks writes body under rk and id, from chunk number first on.
func putBoltChunks(tx *bolt.Tx, rk []byte, id uint64, body []byte, first uint64) error {
	sub, err := tx.Bucket(boltBodyBucket).CreateBucketIfNotExists(boltBodyKey(rk, id))
	if err != nil {
		return err
	}
	for i := first; i*boltChunk < uint64(len(body)); i++ {
		end := min(uint64(len(body)), (i+1)*boltChunk)
		if err := sub.Put(boltChunkKey(i), body[i*boltChunk:end]); err != nil {
			return err
		}
	}
	return nil
}

// boltChunksThere reports whether the chunks of m's body are all there,
// of the right lengths (their content is checked by readers).
func boltChunksThere(tx *bolt.Tx, rk []byte, m *boltMetaRecord) bool {
	sub := tx.Bucket(boltBodyBucket).Bucket(boltBodyKey(rk, m.bodyID))
	for i := range m.chunks() {
		if sub == nil || uint64(len(sub.Get(boltChunkKey(i)))) != min(m.bodyLen-i*boltChunk, boltChunk) {
			return false
		}
	}
	return true
}

// boltBodyIs reports whether the body m names under rk is body, comparing
// it where the file is mapped (no copy). m's lengths must be body's.
func boltBodyIs(tx *bolt.Tx, rk []byte, m *boltMetaRecord, body []byte) bool {
	if m.bodyID == 0 {
		return bytes.Equal(m.body, body)
	}
	sub := tx.Bucket(boltBodyBucket).Bucket(boltBodyKey(rk, m.bodyID))
	if sub == nil {
		return false
	}
	for i := range m.chunks() {
		start := i * boltChunk
		v := sub.Get(boltChunkKey(i))
		if !bytes.Equal(v, body[start:min(m.bodyLen, start+boltChunk)]) {
			return false
		}
		dropMapped(v)
	}
	return true
}

// readBoltEntry reads the entry under rk: ErrNotFound, or an error wrapping
// ErrCorruptEntry if a checksum or length does not match. The entry and its
// body are copies, safe after the transaction. The body is copied a chunk
// at a time, and the mapped pages it came from are dropped from this
// process's resident memory as it goes (see dropMapped), so serving a large
// body costs the body once.
func readBoltEntry(tx *bolt.Tx, rk []byte, maxBody uint64) (*Entry, *boltMetaRecord, error) {
	mv, ok := boltGet(tx.Bucket(boltMetaBucket), rk)
	if !ok {
		return nil, nil, ErrNotFound
	}
	m, err := parseBoltMetaRecord(mv)
	if err != nil {
		return nil, nil, err
	}
	if m.bodyLen > maxBody {
		return nil, nil, fmt.Errorf("%w: body length %d larger than the file", ErrCorruptEntry, m.bodyLen)
	}
	m.meta = bytes.Clone(m.meta)
	e, err := DecodeEntry(m.meta)
	if err == nil && len(e.Body) > 0 {
		err = fmt.Errorf("%w: body in meta record", ErrCorruptEntry)
	}
	if err != nil {
		return nil, nil, err
	}
	if m.bodyLen == 0 {
		if m.bodyCRC != 0 {
			return nil, nil, fmt.Errorf("%w: body checksum does not match", ErrCorruptEntry)
		}
		return e, &m, nil
	}
	if m.bodyID == 0 {
		if crc32.Checksum(m.body, castagnoli) != m.bodyCRC {
			return nil, nil, fmt.Errorf("%w: body fails its checksum", ErrCorruptEntry)
		}
		e.Body = bytes.Clone(m.body)
		m.body = e.Body
		return e, &m, nil
	}
	sub := tx.Bucket(boltBodyBucket).Bucket(boltBodyKey(rk, m.bodyID))
	if sub == nil {
		return nil, nil, fmt.Errorf("%w: body missing", ErrCorruptEntry)
	}
	body := make([]byte, 0, m.bodyLen)
	crc := uint32(0)
	c := sub.Cursor()
	k, v := c.First()
	for i := range m.chunks() {
		want := min(m.bodyLen-i*boltChunk, boltChunk)
		if !bytes.Equal(k, boltChunkKey(i)) || uint64(len(v)) != want {
			return nil, nil, fmt.Errorf("%w: body chunk %d missing or of the wrong length", ErrCorruptEntry, i)
		}
		crc = crc32.Update(crc, castagnoli, v)
		body = append(body, v...)
		dropMapped(v)
		k, v = c.Next()
	}
	if crc != m.bodyCRC {
		return nil, nil, fmt.Errorf("%w: body fails its checksum", ErrCorruptEntry)
	}
	e.Body = body
	return e, &m, nil
}

// checkBoltSchema reports whether the database is empty or of schema
// version 1 (and may be made a store of this version), or an error if it is
// not a store of a known version.
func checkBoltSchema(tx *bolt.Tx) (fresh bool, err error) {
	sb := tx.Bucket(boltSchemaBucket)
	if sb == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return false, fmt.Errorf("%w: a bbolt database of another program (no %q bucket)", ErrIncompatibleFile, boltSchemaBucket)
		}
		return true, nil
	}
	v := sb.Get(boltVersionKey)
	if len(v) != 8 {
		return false, fmt.Errorf("%w: no readable schema version", ErrCorruptFile)
	}
	switch n := binary.BigEndian.Uint64(v); {
	case n == 1:
		return true, nil
	case n != boltSchemaVersion && n != 2: // version 2 is a subset of 3
		return false, fmt.Errorf("%w: schema version %d, this etagcache supports version %d", ErrIncompatibleFile, n, boltSchemaVersion)
	}
	if tx.Bucket(boltMetaBucket) == nil || tx.Bucket(boltBodyBucket) == nil {
		return true, nil
	}
	return false, nil
}

// createBoltSchema makes the database an empty store of this version,
// dropping whatever an older version stored. Creating buckets fails only on
// a file whose structure is not what it claims (a key where a bucket should
// be), so its errors say the file is damaged.
func createBoltSchema(tx *bolt.Tx) error {
	if err := makeBoltSchema(tx); err != nil {
		return fmt.Errorf("%w: cannot lay out its buckets: %v", ErrCorruptFile, err)
	}
	return nil
}

func makeBoltSchema(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(boltSchemaBucket); err != nil {
		return err
	}
	for _, name := range [][]byte{boltMetaBucket, boltBodyBucket} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return markBoltSchema(tx)
}

// markBoltSchema makes sure the file says it is of this schema version:
// one of version 2 is marked 3 before it gets an inline body.
func markBoltSchema(tx *bolt.Tx) error {
	sb := tx.Bucket(boltSchemaBucket)
	if v := sb.Get(boltVersionKey); len(v) == 8 && binary.BigEndian.Uint64(v) == boltSchemaVersion {
		return nil
	}
	return sb.Put(boltVersionKey, binary.BigEndian.AppendUint64(nil, boltSchemaVersion))
}
