package etagcache

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"

	bolt "go.etcd.io/bbolt"
)

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
			w.tx, w.gen = tx, gen
			fresh, err := checkBoltSchema(tx)
			if err != nil {
				return err
			}
			if fresh { // the file was removed by hand and made anew by bbolt
				if err := createBoltSchema(tx); err != nil {
					return err
				}
				current, w.fresh = false, true
			}
			if !current {
				if _, err := w.loadIndex(false); err != nil {
					return err
				}
			}
			for _, q := range batch {
				if err := w.put([]byte(q.rk), q.p); err != nil {
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
func (s *BoltStore) putLarge(ctx context.Context, rk []byte, p *boltPending) error {
	e := p.e
	m := boltMetaRecord{bodyLen: uint64(len(e.Body)), bodyID: boltBodyID(), meta: EncodeEntryMeta(e)}
	if boltSize(&m) > s.cfg.maxBytes {
		return s.commit(ctx, func(w *boltWrite) error { return w.remove(rk) })
	}
	m.bodyCRC = p.bodySum()
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
		if w.refused(rk, e) {
			// Invalidated while its chunks were written: they go.
			w.changed = true
			if err := deleteBoltBodies(w.tx, boltBodyKey(rk, m.bodyID), nil); err != nil {
				return err
			}
			return w.tx.Bucket(boltSchemaBucket).Delete(mark)
		}
		if !boltChunksThere(w.tx, rk, &m) {
			return fmt.Errorf("etagcache: bolt store: the body of a large entry was removed while it was written")
		}
		if err := w.tx.Bucket(boltSchemaBucket).Delete(mark); err != nil {
			return err
		}
		return w.setRecord(rk, &m, e)
	})
}
