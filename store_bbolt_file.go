package etagcache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// The layout of a BoltStore file, schema version 2:
//
//	bucket "etagcache": "version" → uint64 big-endian (the schema marker),
//	                    "large:" | record key | body id → "" (see putLarge)
//	bucket "meta":      record key → meta record
//	bucket "body":      record key | body id | chunk number → body chunk
//
// A record key is SHA-256(key) | 0x00 | SHA-256(variant), 65 bytes whatever
// the length of key and variant, so all variants of a key share a prefix.
// A meta record is
//
//	CRC-32C of the rest | last use (int64 Unix ns) | body length (uint64) |
//	CRC-32C of the body | body id (uint64) | EncodeEntryMeta
//
// all big-endian. The body is cut into chunks of at most boltChunk bytes
// (none for an empty body), stored under the body id, a random number drawn
// for each body written: a body is only ever written under a fresh id, and
// the meta record that names it is written last, so a reader never sees a
// meta record with another body's chunks. The checksums are verified on
// every read: a record that fails is a miss and is removed.
//
// Any change to this layout must change boltSchemaVersion. Files of version
// 1 (no checksums) are emptied and upgraded when opened.
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
	boltSchemaVersion = 2
	boltMetaPrefix    = 4 + 8 + 8 + 4 + 8
	boltRecordKeyLen  = 2*sha256.Size + 1
	boltChunkKeyLen   = boltRecordKeyLen + 8 + 4
	boltChunk         = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// boltMetaRecord is a decoded meta record (entry metadata still encoded).
type boltMetaRecord struct {
	used    int64
	bodyLen uint64
	bodyCRC uint32
	bodyID  uint64
	meta    []byte // EncodeEntryMeta
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
	return b
}

func (m *boltMetaRecord) bytes() []byte {
	return m.append(make([]byte, 0, boltMetaPrefix+len(m.meta)))
}

// chunks is the number of body chunks.
func (m *boltMetaRecord) chunks() uint64 { return (m.bodyLen + boltChunk - 1) / boltChunk }

// parseBoltMetaRecord checks the record's checksum and splits it; meta
// aliases v.
func parseBoltMetaRecord(v []byte) (boltMetaRecord, error) {
	if len(v) < boltMetaPrefix {
		return boltMetaRecord{}, fmt.Errorf("%w: meta record of %d bytes", ErrCorruptEntry, len(v))
	}
	if crc32.Checksum(v[4:], castagnoli) != binary.BigEndian.Uint32(v) {
		return boltMetaRecord{}, fmt.Errorf("%w: meta record fails its checksum", ErrCorruptEntry)
	}
	return boltMetaRecord{
		used:    int64(binary.BigEndian.Uint64(v[4:])),
		bodyLen: binary.BigEndian.Uint64(v[12:]),
		bodyCRC: binary.BigEndian.Uint32(v[20:]),
		bodyID:  binary.BigEndian.Uint64(v[24:]),
		meta:    v[boltMetaPrefix:],
	}, nil
}

// boltSize is what an entry counts against the size bound: the bytes of
// its records, keys and values, as bbolt stores them, plus bbolt's
// per-element header (16 bytes) for each.
func boltSize(m *boltMetaRecord) int64 {
	n := int64(m.chunks())
	return boltRecordKeyLen + int64(boltMetaPrefix+len(m.meta)) + int64(m.bodyLen) + n*boltChunkKeyLen + (n+1)*16
}

func boltKeyPrefix(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return append(h[:], 0)
}

func boltRecordKey(key, variant string) []byte {
	h := sha256.Sum256([]byte(variant))
	return append(boltKeyPrefix(key), h[:]...)
}

func boltChunkKey(rk []byte, id, chunk uint64) []byte {
	k := make([]byte, 0, boltChunkKeyLen)
	k = append(k, rk...)
	k = binary.BigEndian.AppendUint64(k, id)
	return binary.BigEndian.AppendUint32(k, uint32(chunk))
}

// boltGet tells a missing key from an empty value, which Bucket.Get does not.
func boltGet(b *bolt.Bucket, k []byte) ([]byte, bool) {
	ck, v := b.Cursor().Seek(k)
	return v, bytes.Equal(ck, k)
}

// deleteBoltRecord removes the meta record of rk and every body chunk
// stored under rk, whatever its body id.
func deleteBoltRecord(tx *bolt.Tx, rk []byte) error {
	if err := tx.Bucket(boltMetaBucket).Delete(rk); err != nil {
		return err
	}
	return deleteBoltChunks(tx, rk)
}

// deleteBoltChunks removes the body chunks whose key starts with prefix.
func deleteBoltChunks(tx *bolt.Tx, prefix []byte) error {
	c := tx.Bucket(boltBodyBucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// putBoltChunks writes body under rk and id, from chunk number first on.
func putBoltChunks(tx *bolt.Tx, rk []byte, id uint64, body []byte, first uint64) error {
	bb := tx.Bucket(boltBodyBucket)
	for i := first; i*boltChunk < uint64(len(body)); i++ {
		end := min(uint64(len(body)), (i+1)*boltChunk)
		if err := bb.Put(boltChunkKey(rk, id, i), body[i*boltChunk:end]); err != nil {
			return err
		}
	}
	return nil
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
	body := make([]byte, 0, m.bodyLen)
	crc := uint32(0)
	c := tx.Bucket(boltBodyBucket).Cursor()
	k, v := c.Seek(boltChunkKey(rk, m.bodyID, 0))
	for i := range m.chunks() {
		want := min(m.bodyLen-i*boltChunk, boltChunk)
		if !bytes.Equal(k, boltChunkKey(rk, m.bodyID, i)) || uint64(len(v)) != want {
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
	case n != boltSchemaVersion:
		return false, fmt.Errorf("%w: schema version %d, this etagcache supports version %d", ErrIncompatibleFile, n, boltSchemaVersion)
	}
	if tx.Bucket(boltMetaBucket) == nil || tx.Bucket(boltBodyBucket) == nil {
		return true, nil
	}
	return false, nil
}

// createBoltSchema makes the database an empty store of this version,
// dropping whatever an older version stored.
func createBoltSchema(tx *bolt.Tx) error {
	sb, err := tx.CreateBucketIfNotExists(boltSchemaBucket)
	if err != nil {
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
	return sb.Put(boltVersionKey, binary.BigEndian.AppendUint64(nil, boltSchemaVersion))
}
