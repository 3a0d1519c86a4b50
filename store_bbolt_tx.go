package etagcache

import (
	"bytes"
	"cmp"
	"container/list"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltWrite is one write transaction of a BoltStore, keeping its index
// and what the entry cache must learn after the commit.
type boltWrite struct {
	s       *BoltStore
	tx      *bolt.Tx
	gen     uint64 // the file's generation when the transaction began
	fresh   bool   // the file was made anew in it: the entry cache describes another
	now     int64
	changed bool // the transaction wrote something
	marked  bool // the schema marker is known to be this version's
	removed []string
	stored  map[string]*Entry
	headers map[string]*Entry // header-only updates
}

func (s *BoltStore) newWrite() *boltWrite {
	return &boltWrite{s: s, now: time.Now().UnixNano(), stored: map[string]*Entry{}, headers: map[string]*Entry{}}
}

// loadIndex rebuilds the index from the meta records. With sweep, records
// that fail their checksums and body chunks that no meta record names are
// removed.
func (w *boltWrite) loadIndex(sweep bool) (repair bool, err error) {
	mb := w.tx.Bucket(boltMetaBucket)
	var items []*boltItem
	var bad [][]byte
	ids := map[string]uint64{}
	c := mb.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		m, err := parseBoltMetaRecord(v)
		if err != nil || len(k) != boltRecordKeyLen {
			bad = append(bad, bytes.Clone(k))
			continue
		}
		items = append(items, &boltItem{rk: string(k), size: boltSize(&m), used: m.used})
		ids[string(k)] = m.bodyID
	}
	slices.SortFunc(items, func(a, b *boltItem) int { return cmp.Compare(a.used, b.used) })
	idx := boltIndex{lru: list.New(), items: make(map[string]*list.Element, len(items))}
	for _, it := range items {
		idx.items[it.rk] = idx.lru.PushFront(it)
		idx.size += it.size
	}
	idx.tombs, idx.floor = loadBoltTombs(w.tx)
	w.s.mu.Lock()
	w.s.idx = idx
	w.s.mu.Unlock()
	sb := w.tx.Bucket(boltSchemaBucket)
	if k, _ := sb.Cursor().Seek(boltLargeMark); !sweep {
		return len(bad) > 0 || bytes.HasPrefix(k, boltLargeMark), nil
	}
	// Only a large Put, cut short, leaves body chunks without a meta record;
	// it marks its chunks until it is done (see putLarge). Reading the keys
	// of all chunks instead would map every page of the file.
	var marks [][]byte
	c = sb.Cursor()
	for k, _ := c.Seek(boltLargeMark); k != nil && bytes.HasPrefix(k, boltLargeMark); k, _ = c.Next() {
		marks = append(marks, bytes.Clone(k))
	}
	for _, k := range marks {
		chunks := k[len(boltLargeMark):]
		if len(chunks) == boltBodyKeyLen && ids[string(chunks[:boltRecordKeyLen])] != binary.BigEndian.Uint64(chunks[boltRecordKeyLen:]) {
			if err := deleteBoltBodies(w.tx, chunks, nil); err != nil {
				return false, err
			}
		}
		if err := sb.Delete(k); err != nil {
			return false, err
		}
		w.changed = true
	}
	for _, k := range bad {
		if err := w.remove(k); err != nil {
			return false, err
		}
	}
	return false, nil
}

// setItem records in the index that rk now holds an entry of size, last
// used at used.
func (w *boltWrite) setItem(rk string, size, used int64) {
	s := w.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.idx.items[rk]; ok {
		s.idx.size -= el.Value.(*boltItem).size
		s.idx.lru.Remove(el)
	}
	s.idx.items[rk] = s.idx.place(&boltItem{rk: rk, size: size, used: used})
	s.idx.size += size
}

// place inserts it in LRU order, walking from the most recent end: the
// entries placed are nearly always the most recent.
func (x *boltIndex) place(it *boltItem) *list.Element {
	for el := x.lru.Front(); el != nil; el = el.Next() {
		if el.Value.(*boltItem).used <= it.used {
			return x.lru.InsertBefore(it, el)
		}
	}
	return x.lru.PushBack(it)
}

// remove deletes the records of rk.
func (w *boltWrite) remove(rk []byte) error {
	if err := deleteBoltRecord(w.tx, rk); err != nil {
		return err
	}
	w.changed = true
	srk := string(rk)
	w.removed = append(w.removed, srk)
	delete(w.stored, srk)
	delete(w.headers, srk)
	s := w.s
	s.mu.Lock()
	if el, ok := s.idx.items[srk]; ok {
		s.idx.size -= el.Value.(*boltItem).size
		s.idx.lru.Remove(el)
		delete(s.idx.items, srk)
	}
	s.mu.Unlock()
	return nil
}

// put writes e under rk: a small body inside its meta record, a larger one
// under a fresh id, then its meta record; the previous body's chunks are
// removed.
func (w *boltWrite) put(rk []byte, p *boltPending) error {
	e := p.e
	if w.refused(rk, e) {
		return nil // requested before an invalidation, perhaps another process's
	}
	m := boltMetaRecord{used: p.at, bodyLen: uint64(len(e.Body)), meta: EncodeEntryMeta(e)}
	inline := len(e.Body) <= boltInlineMax
	if inline {
		m.body = e.Body
	} else {
		m.bodyID = boltBodyID()
	}
	if boltSize(&m) > w.s.cfg.maxBytes {
		if _, ok := boltGet(w.tx.Bucket(boltMetaBucket), rk); ok {
			return w.remove(rk)
		}
		return nil
	}
	m.bodyCRC = p.bodySum()
	if inline && !w.marked {
		if err := markBoltSchema(w.tx); err != nil {
			return err
		}
		w.marked = true
	}
	if !inline {
		if err := putBoltChunks(w.tx, rk, m.bodyID, e.Body, 0); err != nil {
			return err
		}
	}
	return w.setRecord(rk, &m, e)
}

// setRecord writes the meta record of rk naming m's body, whose chunks are
// in place, and removes the chunks of the body it replaces.
func (w *boltWrite) setRecord(rk []byte, m *boltMetaRecord, e *Entry) error {
	mb := w.tx.Bucket(boltMetaBucket)
	if err := deleteBoltBodies(w.tx, rk, boltBodyKey(rk, m.bodyID)); err != nil {
		return err
	}
	if m.used == 0 {
		m.used = w.now
	}
	if err := mb.Put(rk, m.bytes()); err != nil {
		return err
	}
	w.changed = true
	srk := string(rk)
	w.stored[srk] = e
	delete(w.headers, srk)
	w.setItem(srk, boltSize(m), m.used)
	return nil
}

// updateHeader replaces the metadata of the entry under rk, if it has the
// same validators as e.
func (w *boltWrite) updateHeader(rk []byte, e *Entry) error {
	mb := w.tx.Bucket(boltMetaBucket)
	mv, ok := boltGet(mb, rk)
	if !ok {
		return ErrNotFound
	}
	m, err := parseBoltMetaRecord(mv)
	var prev *Entry
	if err == nil {
		prev, err = DecodeEntry(bytes.Clone(m.meta))
	}
	if err != nil {
		if rerr := w.remove(rk); rerr != nil {
			return rerr
		}
		return ErrNotFound
	}
	if !prev.SameValidators(e) || !w.holds(rk, &m, e.Body) {
		return ErrNotFound // another representation was stored meanwhile
	}
	m.meta = EncodeEntryMeta(e)
	m.used = w.now
	if boltSize(&m) > w.s.cfg.maxBytes {
		return w.remove(rk)
	}
	if err := mb.Put(rk, m.bytes()); err != nil {
		return err
	}
	w.changed = true
	srk := string(rk)
	if _, ok := w.stored[srk]; ok {
		ne := *e
		ne.Body = w.stored[srk].Body
		w.stored[srk] = &ne
	} else {
		w.headers[srk] = e
	}
	w.setItem(srk, boltSize(&m), m.used)
	return nil
}

// holds reports whether the body under rk, which m describes, is body. One
// written in this transaction, or held by the entry cache as of the
// generation the transaction began at, is what Get handed out: recognised
// without reading it. Any other is compared with the file's bytes.
func (w *boltWrite) holds(rk []byte, m *boltMetaRecord, body []byte) bool {
	if m.bodyLen != uint64(len(body)) {
		return false
	}
	srk := string(rk)
	if e, ok := w.stored[srk]; ok {
		return sameBody(e.Body, body)
	}
	if !w.fresh {
		if e := w.s.cache.get(srk, w.gen); e != nil {
			return sameBody(e.Body, body)
		}
	}
	return boltBodyIs(w.tx, rk, m, body)
}

// deletePrefix removes every entry whose record key starts with prefix.
func (w *boltWrite) deletePrefix(prefix []byte) error {
	var keys [][]byte
	c := w.tx.Bucket(boltMetaBucket).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := w.remove(k); err != nil {
			return err
		}
	}
	if k, _ := w.tx.Bucket(boltBodyBucket).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
		w.changed = true
		if err := deleteBoltBodies(w.tx, prefix, nil); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return ErrNotFound
	}
	return nil
}

// touch writes the last use of entries read since the last write.
func (w *boltWrite) touch(used map[string]int64) error {
	mb := w.tx.Bucket(boltMetaBucket)
	for rk, t := range used {
		mv, ok := boltGet(mb, []byte(rk))
		if !ok {
			continue
		}
		m, err := parseBoltMetaRecord(mv)
		if err != nil || m.used >= t {
			continue
		}
		m.used = t
		m.meta = bytes.Clone(m.meta)
		if err := mb.Put([]byte(rk), m.bytes()); err != nil {
			return err
		}
		w.changed = true
		w.s.mu.Lock()
		if el, ok := w.s.idx.items[rk]; ok {
			it := el.Value.(*boltItem)
			w.s.idx.lru.Remove(el)
			it.used = max(it.used, t)
			w.s.idx.items[rk] = w.s.idx.place(it)
		}
		w.s.mu.Unlock()
	}
	return nil
}

// evict removes least recently used entries until the size bound holds.
func (w *boltWrite) evict() error {
	s := w.s
	for {
		s.mu.Lock()
		var victim string
		if s.idx.size > s.cfg.maxBytes {
			if el := s.idx.lru.Back(); el != nil {
				victim = el.Value.(*boltItem).rk
			}
		}
		s.mu.Unlock()
		if victim == "" {
			return nil
		}
		if err := w.remove([]byte(victim)); err != nil {
			return err
		}
	}
}

// bodySum is the CRC-32C of the body: as the caller gave it, or computed.
func (p *boltPending) bodySum() uint32 {
	if p.hasSum {
		return p.sum
	}
	return crc32.Checksum(p.e.Body, castagnoli)
}
