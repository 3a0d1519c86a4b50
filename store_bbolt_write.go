package etagcache

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// errSetAside: the file was damaged and has been replaced by an empty
	// one; the operation may be retried once.
	errSetAside = errors.New("etagcache: damaged store file set aside")
	// errNoChange rolls back a write transaction that had nothing to do.
	errNoChange = errors.New("etagcache: nothing to write")
)

func isDamage(err error) bool {
	return errors.Is(err, ErrCorruptFile) || errors.Is(err, ErrIncompatibleFile)
}

// session runs fn on the database, under the lock file (exclusive when
// write). fn reports whether it committed a change, in which case the
// generation is incremented before the lock is released.
//
// A write session keeps the database open afterwards (the handle), with
// bbolt's own lock on the file released: the lock file guards it. The next
// session uses the handle again if the generation shows that no other
// process has written since, and otherwise drops it and opens the file
// anew; a read session without a current handle opens the file read-only
// for the one operation.
//
// A damaged or foreign file is set aside (WithBoltRecover; the error is
// then errSetAside) or marks the store broken.
func (s *BoltStore) session(ctx context.Context, write bool, fn func(db *bolt.DB, gen uint64) (bool, error)) error {
	damaged, err := s.sessionOnce(ctx, write, fn)
	if !isDamage(err) {
		return err
	}
	if !s.cfg.recover {
		s.mu.Lock()
		s.broken = fmt.Errorf("etagcache: %s: %w; remove the file, or open it with WithBoltRecover", s.path, err)
		s.mu.Unlock()
		return err
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	lk, lerr := lockBolt(ctx, s.lockPath, true, s.cfg.lockTimeout)
	if lerr != nil {
		return lerr
	}
	defer lk.release()
	s.dropHandle()
	if err := s.setAside(lk, damaged, err); err != nil {
		return err
	}
	return errSetAside
}

// sessionOnce is session but for what a damaged file calls for; it
// returns the file it found damaged. In-process turns are taken on hmu
// first (a mutex wakes its waiters at once), then on the lock file.
func (s *BoltStore) sessionOnce(ctx context.Context, write bool, fn func(db *bolt.DB, gen uint64) (bool, error)) (damaged os.FileInfo, err error) {
	if write {
		s.hmu.Lock()
		defer s.hmu.Unlock()
	} else {
		s.hmu.RLock()
		defer s.hmu.RUnlock()
	}
	lk, err := lockBolt(ctx, s.lockPath, write, s.cfg.lockTimeout)
	if err != nil {
		return nil, err
	}
	defer lk.release()
	if w := int64(lk.wait); w > s.maxWait.Load() {
		s.maxWait.Store(w) // a racy maximum is good enough for a statistic
	}
	gen := lk.gen()
	db := s.handle
	if db != nil && s.handleGen != gen {
		if write {
			s.dropHandle()
		}
		db = nil
	}
	damaged = s.handleFile
	own := false
	if db == nil {
		damaged, _ = os.Stat(s.path)
		var f *os.File
		db, f, err = openBoltDB(s.path, !write, s.allocSize, s.cfg.lockTimeout)
		if !write && errors.Is(err, fs.ErrNotExist) {
			return nil, ErrNotFound // removed by hand: nothing stored; the next write makes a new file
		}
		if err != nil {
			return damaged, err
		}
		if write {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // the lock file guards it from now on
			s.handle, s.handleFile, s.handleGen = db, damaged, gen
		} else {
			own = true
		}
	}
	var st0 bolt.TxStats
	if write {
		st0 = db.Stats().TxStats
	}
	var changed bool
	err = guard(func() error {
		var err error
		changed, err = fn(db, gen)
		return err
	})
	if own {
		if cerr := guard(db.Close); err == nil {
			err = cerr
		}
	}
	if !write {
		return damaged, err
	}
	st := db.Stats().TxStats
	s.pageHits.Add(st.GetPageAlloc() - st0.GetPageAlloc())
	s.writeOps.Add(st.GetWrite() - st0.GetWrite())
	if changed {
		if gerr := lk.setGen(gen + 1); err == nil {
			err = gerr
		}
		s.handleGen = gen + 1
	}
	if err != nil || s.handleStale {
		s.dropHandle()
	}
	return damaged, err
}

// dropHandle closes the kept database handle, if any. The caller holds hmu
// exclusively.
func (s *BoltStore) dropHandle() {
	if s.handle != nil {
		_ = guard(s.handle.Close)
	}
	s.handle, s.handleFile, s.handleStale = nil, nil, false
}

// setAside renames the damaged file, unless another process already did,
// and makes a new empty store in its place. It holds the exclusive lock.
func (s *BoltStore) setAside(lk *boltLock, damaged os.FileInfo, cause error) error {
	if fi, err := os.Stat(s.path); err == nil && damaged != nil && os.SameFile(fi, damaged) {
		aside := s.path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
		if err := os.Rename(s.path, aside); err != nil {
			return fmt.Errorf("etagcache: cannot set the damaged store file aside: %w; remove %s by hand", err, s.path)
		}
		s.cfg.log.Warn("etagcache: the cache file was damaged or not a cache; it was set aside and an empty cache started",
			"path", s.path, "moved_to", aside, "reason", cause)
	}
	db, _, err := openBoltDB(s.path, false, s.allocSize, s.cfg.lockTimeout)
	if err != nil {
		return err
	}
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			fresh, err := checkBoltSchema(tx)
			if err != nil || !fresh {
				return err
			}
			return createBoltSchema(tx)
		})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.idx = boltIndex{}
	s.broken = nil
	s.mu.Unlock()
	s.cache.reset()
	return lk.setGen(lk.gen() + 1)
}

// openFile makes the file a store if it is empty (or of schema version 1),
// builds the index, and removes records that fail their checksums, body
// chunks no meta record names, and entries beyond the size bound. It
// writes nothing if there is nothing to change.
func (s *BoltStore) openFile(ctx context.Context) error {
	err := s.openFileOnce(ctx)
	if errors.Is(err, errSetAside) {
		err = s.openFileOnce(ctx)
	}
	return err
}

func (s *BoltStore) openFileOnce(ctx context.Context) error {
	// Most opens find a sound store within its bound: they need only read
	// it, and processes starting together then read it together.
	errRepair := errors.New("repair")
	err := s.session(ctx, false, func(db *bolt.DB, gen uint64) (bool, error) {
		err := db.View(func(tx *bolt.Tx) error {
			if fresh, err := checkBoltSchema(tx); err != nil || fresh {
				return cmp.Or(err, errRepair)
			}
			w := s.newWrite()
			w.tx = tx
			if repair, err := w.loadIndex(false); err != nil || repair {
				return cmp.Or(err, errRepair)
			}
			if s.Size() > s.cfg.maxBytes {
				return errRepair
			}
			return nil
		})
		if err == nil {
			s.finishIndex(gen)
		}
		return false, err
	})
	if err == nil || isDamage(err) || errors.Is(err, errSetAside) || errors.Is(err, ErrStoreLocked) || ctx.Err() != nil {
		return err
	}
	return s.session(ctx, true, func(db *bolt.DB, gen uint64) (bool, error) {
		w := s.newWrite()
		err := db.Update(func(tx *bolt.Tx) error {
			w.tx = tx
			fresh, err := checkBoltSchema(tx)
			if err != nil {
				return err
			}
			if fresh {
				w.changed = true
				if err := createBoltSchema(tx); err != nil {
					return err
				}
			}
			if _, err := w.loadIndex(true); err != nil {
				return err
			}
			if err := w.evict(); err != nil {
				return err
			}
			if !w.changed {
				return errNoChange
			}
			return nil
		})
		if errors.Is(err, errNoChange) {
			s.finishIndex(gen)
			return false, nil
		}
		if err != nil {
			return false, err
		}
		s.writeTxs.Add(1)
		s.finishIndex(gen + 1)
		return true, nil
	})
}

// finishIndex marks the index current as of gen.
func (s *BoltStore) finishIndex(gen uint64) {
	s.mu.Lock()
	s.idx.valid, s.idx.gen = true, gen
	s.mu.Unlock()
}

// readEntry reads the entry under rk from the file and caches it.
func (s *BoltStore) readEntry(ctx context.Context, rk []byte) (*Entry, error) {
	var e *Entry
	err := s.session(ctx, false, func(db *bolt.DB, gen uint64) (bool, error) {
		err := db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(boltMetaBucket) == nil || tx.Bucket(boltBodyBucket) == nil {
				return fmt.Errorf("%w: its buckets are missing", ErrCorruptFile)
			}
			var err error
			e, _, err = readBoltEntry(tx, rk, uint64(tx.Size()))
			return err
		})
		if err == nil {
			s.cache.fill(string(rk), e, gen)
		}
		return false, err
	})
	if errors.Is(err, errSetAside) {
		return nil, ErrNotFound
	}
	return e, err
}

// removeDamaged removes the records of rk if they still fail their checks.
func (s *BoltStore) removeDamaged(ctx context.Context, rk []byte) error {
	err := s.commit(ctx, func(w *boltWrite) error {
		_, _, err := readBoltEntry(w.tx, rk, uint64(w.tx.Size()))
		if !errors.Is(err, ErrCorruptEntry) {
			return ErrNotFound // replaced or removed meanwhile
		}
		return w.remove(rk)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// commit runs one write transaction: the recency of entries read, the
// queued Puts, then fn (if not nil). If fn fails with ErrNotFound after
// changing something, the changes are kept and commit returns ErrNotFound.
// A file found damaged and set aside is written to once more, new.
func (s *BoltStore) commit(ctx context.Context, fn func(*boltWrite) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.commitOnce(ctx, fn)
	if errors.Is(err, errSetAside) {
		err = s.commitOnce(ctx, fn)
	}
	return err
}

type boltQueued struct {
	rk  string
	p   *boltPending
	put bool
}

func (s *BoltStore) commitOnce(ctx context.Context, fn func(*boltWrite) error) error {
	s.mu.Lock()
	batch := make([]boltQueued, 0, len(s.pending))
	for rk, p := range s.pending {
		batch = append(batch, boltQueued{rk: rk, p: p})
	}
	slices.SortFunc(batch, func(a, b boltQueued) int { return cmp.Compare(a.p.seq, b.p.seq) })
	used := s.used
	s.used = make(map[string]int64)
	broken := s.broken
	s.mu.Unlock()
	defer s.dequeue(batch)
	if broken != nil {
		return broken
	}
	closing := s.closeWrite
	if len(batch) == 0 && len(used) == 0 && fn == nil {
		return nil
	}
	w := s.newWrite()
	var result error
	err := s.session(ctx, true, func(db *bolt.DB, gen uint64) (bool, error) {
		// The index is changed in place as the transaction goes (Gets may
		// use it meanwhile: what they see is a state between the one before
		// and the one after), and dropped if the transaction fails.
		s.mu.Lock()
		current := s.idx.valid && s.idx.gen == gen
		s.mu.Unlock()
		err := db.Update(func(tx *bolt.Tx) error {
			w.tx = tx
			fresh, err := checkBoltSchema(tx)
			if err != nil {
				return err
			}
			if fresh { // the file was removed by hand and made anew by bbolt
				if err := createBoltSchema(tx); err != nil {
					return err
				}
				current = false
			}
			if !current {
				if _, err := w.loadIndex(false); err != nil {
					return err
				}
			}
			for _, q := range batch {
				if err := w.put([]byte(q.rk), q.p.e, q.p.at); err != nil {
					return err
				}
			}
			if fn != nil {
				if err := fn(w); errors.Is(err, ErrNotFound) && w.changed {
					result = ErrNotFound
				} else if err != nil {
					return err
				}
			}
			if w.changed || closing { // recency alone is not worth a write, but for Close
				if err := w.touch(used); err != nil {
					return err
				}
				used = nil
			}
			if err := w.evict(); err != nil {
				return err
			}
			if !w.changed {
				return errNoChange
			}
			return nil
		})
		if errors.Is(err, errNoChange) {
			s.finishIndex(gen) // as it was, or as loaded
			return false, nil
		}
		if err != nil {
			s.mu.Lock()
			s.idx.valid = false
			s.mu.Unlock()
			return false, err
		}
		s.writeTxs.Add(1)
		s.cache.committed(gen, gen+1, w.removed, w.stored, w.headers)
		s.finishIndex(gen + 1)
		if err := s.maybeCompact(db); err != nil {
			return true, err
		}
		s.dirty.Store(true)
		return true, nil
	})
	if len(used) > 0 { // not written: keep for the next write
		s.mu.Lock()
		for rk, t := range used {
			s.used[rk] = max(s.used[rk], t)
		}
		s.mu.Unlock()
	}
	switch {
	case errors.Is(err, errSetAside):
		return err
	case err != nil && len(batch) > 0 && fn == nil:
		return fmt.Errorf("etagcache: bolt store write of %d entries: %w", len(batch), err)
	case err != nil:
		return err
	}
	return result
}

// dequeue drops the queued Puts of batch that were not replaced meanwhile:
// written, or failed and logged.
func (s *BoltStore) dequeue(batch []boltQueued) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range batch {
		if p := s.pending[q.rk]; p == q.p {
			delete(s.pending, q.rk)
			s.pendSize -= int64(len(p.e.Body))
		}
	}
}

// syncFile flushes the file's written pages to the disk.
func (s *BoltStore) syncFile() error {
	if !s.dirty.Swap(false) {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// maybeCompact rewrites a file that has grown past 1.2 times the bound
// into a new file, and renames that over it. It runs under the exclusive
// lock, after the transaction, with db still open on the old file.
func (s *BoltStore) maybeCompact(db *bolt.DB) error {
	fi, err := os.Stat(s.path)
	if err != nil || s.cfg.maxBytes >= 1<<62 || float64(fi.Size()) <= 1.2*float64(s.cfg.maxBytes) || fi.Size() < 1<<20 {
		return err
	}
	tmp := s.path + ".compacting"
	_ = os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, NoGrowSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("etagcache: compacting: %w", err)
	}
	err = bolt.Compact(dst, db, 8<<20)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
		s.handleStale = true // it maps the old file
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("etagcache: compacting: %w", err)
	}
	return nil
}

// putLarge writes a body too large to queue: its chunks first, several
// transactions of 8 MiB, under a fresh body id that no meta record names
// yet; then, in a last transaction, the meta record, once every chunk is
// checked to be there. A crash in between leaves chunks that the next
// OpenBoltStore removes. bbolt copies what a transaction writes, so this
// bounds the store's own copy of the body to 8 MiB.
func (s *BoltStore) putLarge(ctx context.Context, rk []byte, e *Entry) error {
	m := boltMetaRecord{bodyLen: uint64(len(e.Body)), bodyID: rand.Uint64(), meta: EncodeEntryMeta(e)}
	if boltSize(&m) > s.cfg.maxBytes {
		return s.commit(ctx, func(w *boltWrite) error { return w.remove(rk) })
	}
	m.bodyCRC = crc32.Checksum(e.Body, castagnoli)
	const group = 8
	mark := append(bytes.Clone(boltLargeMark), boltBodyKey(rk, m.bodyID)...)
	for first := uint64(0); first < m.chunks(); first += group {
		err := s.commit(ctx, func(w *boltWrite) error {
			w.changed = true
			if err := w.tx.Bucket(boltSchemaBucket).Put(mark, nil); err != nil {
				return err
			}
			end := min(first+group, m.chunks())
			return putBoltChunks(w.tx, rk, m.bodyID, e.Body[:min(end*boltChunk, m.bodyLen)], first)
		})
		if err != nil {
			return err
		}
		// bbolt's copy of the group is garbage now. Left to the collector's
		// pace, such garbage piles up to the size of the live heap, which
		// holds the caller's body: a second copy after all.
		runtime.GC()
	}
	return s.commit(ctx, func(w *boltWrite) error {
		if !boltChunksThere(w.tx, rk, &m) {
			return fmt.Errorf("etagcache: bolt store: the body of a large entry was removed while it was written")
		}
		if err := w.tx.Bucket(boltSchemaBucket).Delete(mark); err != nil {
			return err
		}
		return w.setRecord(rk, &m, e)
	})
}

// boltWrite is one write transaction of a BoltStore, keeping its index
// and what the entry cache must learn after the commit.
type boltWrite struct {
	s       *BoltStore
	tx      *bolt.Tx
	now     int64
	changed bool // the transaction wrote something
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

// put writes e under rk: its body under a fresh id, then its meta record;
// the previous body's chunks are removed.
func (w *boltWrite) put(rk []byte, e *Entry, at int64) error {
	m := boltMetaRecord{used: at, bodyLen: uint64(len(e.Body)), bodyID: rand.Uint64(), meta: EncodeEntryMeta(e)}
	if boltSize(&m) > w.s.cfg.maxBytes {
		if _, ok := boltGet(w.tx.Bucket(boltMetaBucket), rk); ok {
			return w.remove(rk)
		}
		return nil
	}
	m.bodyCRC = crc32.Checksum(e.Body, castagnoli)
	if err := putBoltChunks(w.tx, rk, m.bodyID, e.Body, 0); err != nil {
		return err
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
	if !prev.SameValidators(e) {
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
