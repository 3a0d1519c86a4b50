package etagcache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
		mapSize := 0
		if write {
			mapSize = s.mapSize
		}
		db, f, err = openBoltDB(s.path, !write, s.allocSize, mapSize, s.cfg.lockTimeout)
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
	db, _, err := openBoltDB(s.path, false, s.allocSize, 0, s.cfg.lockTimeout)
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
		if structuralDamage(err) {
			// A key where a bucket should be, or the reverse: the page
			// tree is not what it claims, whatever its checksums say.
			err = fmt.Errorf("%w: %v", ErrCorruptFile, err)
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

// structuralDamage reports whether err is bbolt's word that a bucket or key
// is not of the kind the store wrote there.
func structuralDamage(err error) bool {
	return errors.Is(err, berrors.ErrIncompatibleValue) || errors.Is(err, berrors.ErrBucketNotFound) ||
		errors.Is(err, berrors.ErrBucketExists)
}
