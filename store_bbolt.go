package etagcache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// ErrStoreClosed is wrapped by the error of every BoltStore method called
	// after Close.
	ErrStoreClosed = errors.New("etagcache: store is closed")
	// ErrStoreLocked is wrapped by the error of a BoltStore operation that
	// waited longer than the lock timeout for other processes to let go of
	// the file.
	ErrStoreLocked = errors.New("etagcache: store file is in use")
	// ErrIncompatibleFile is wrapped by the error of OpenBoltStore when the
	// file exists but is not an etagcache store: not a bbolt database, a
	// bbolt database of another program, or a store of a schema version this
	// code does not know. Without WithBoltRecover the file is left untouched.
	ErrIncompatibleFile = errors.New("etagcache: file is not a usable etagcache store")
	// ErrCorruptFile is wrapped by the error of OpenBoltStore, or of an
	// operation, when the file is a damaged bbolt database: a bad meta page,
	// a length cut short, or a structure bbolt fails on. Without
	// WithBoltRecover the file is left untouched.
	ErrCorruptFile = errors.New("etagcache: store file is damaged")
)

const (
	defaultBoltMaxBytes    = 1 << 30
	defaultBoltLockTimeout = 5 * time.Second
	defaultBoltCache       = 64 << 20
	// boltPendingMax bounds the body bytes of Puts waiting to be written;
	// a Put beyond it writes synchronously.
	boltPendingMax = 16 << 20
	// boltGroupDelay is how long a queued Put waits for others to be
	// written with it.
	boltGroupDelay = 2 * time.Millisecond
	// boltSyncEvery is how often written data is flushed to the disk.
	boltSyncEvery = time.Second
)

type boltConfig struct {
	maxBytes    int64
	lockTimeout time.Duration
	cache       int64
	recover     bool
	log         *slog.Logger
}

// BoltOption configures OpenBoltStore.
type BoltOption func(*boltConfig)

// WithBoltMaxBytes bounds the bytes the store keeps: the sum over entries
// of the keys and values of their bbolt records (body, encoded metadata,
// 65-byte record keys, 77-byte chunk keys) plus 16 bytes per record. When a
// write would pass it, the least recently used entries are removed in the
// same transaction; an entry larger than the bound on its own is not kept.
// The file is kept within 1.25 times the bound (plus a few pages): freed
// pages are reused, and a file that grows past 1.2 times the bound is
// compacted. As for every size in this module, 0 means the default, 1 GiB,
// and a negative n means no bound.
func WithBoltMaxBytes(n int64) BoltOption {
	return func(c *boltConfig) { c.maxBytes = n }
}

// WithBoltLockTimeout sets how long one operation waits for other processes
// using the file before failing with ErrStoreLocked. Operations hold the
// file for a single short transaction, so waits are normally well under a
// millisecond. As for every duration in this module, 0 means the default,
// five seconds, and a negative d means no wait: a single attempt.
func WithBoltLockTimeout(d time.Duration) BoltOption {
	return func(c *boltConfig) { c.lockTimeout = d }
}

// WithBoltCache sets how many bytes of recently used entries the store keeps
// decoded in memory, so that serving one again needs neither a read of the
// file nor a copy of its body. Written entries are kept too. The cache is
// checked against the file's generation (see BoltStore) before each use and
// never serves an entry another process has replaced. As for every size in
// this module, 0 means the default, 64 MiB, and a negative n turns the
// cache off.
func WithBoltCache(n int64) BoltOption {
	return func(c *boltConfig) { c.cache = n }
}

// WithBoltRecover makes the store set a damaged or foreign file aside, by
// renaming it to path+".corrupt-<UTC time>", and carry on with a new, empty
// one, logging one warning that says so. Without it (the default), such a
// file is an error wrapping ErrCorruptFile or ErrIncompatibleFile and is
// left untouched.
func WithBoltRecover(on bool) BoltOption {
	return func(c *boltConfig) { c.recover = on }
}

// WithBoltLogger sets where the store logs what callers cannot see in a
// returned error: a file set aside, a write-behind that failed. The default,
// also for nil, is slog.Default().
func WithBoltLogger(l *slog.Logger) BoltOption {
	return func(c *boltConfig) { c.log = l }
}

// BoltStore is a Store, HeaderUpdater and Invalidator that keeps entries
// in a bbolt database file, which several processes can use at once.
//
// Every operation opens the file, runs one short transaction and closes it
// again, under a lock on the side file path+".lock" (shared to read,
// exclusive to write); so processes take turns per operation, not per
// lifetime. The side file also holds a generation counter that every write
// increments: while it is unchanged, a process answers from what it already
// knows (its index of the keys in the file, its entry cache) without
// opening the file at all.
//
// Put is write-behind: it returns at once, and the entry is written, with
// any others waiting, by a background goroutine in one transaction; until
// then Get serves it from memory. Commits are not synced one by one: the
// file is synced at most a second after a write and at Close. A crash of
// the process loses nothing that was committed; a crash of the machine may
// lose the last second of writes, or damage the file, which the next open
// detects. UpdateHeader and Delete are synchronous.
//
// The metadata and the body of an entry carry CRC-32C checksums verified on
// every read from the file: an entry that fails is removed and reported by
// Get as an error wrapping ErrCorruptEntry (the transport logs it, counts
// it in Stats.StoreErrors, and fetches the resource again). A Get writes
// nothing: the recency behind the LRU size bound is kept in memory and
// written with the next write. A BoltStore is safe for concurrent use.
type BoltStore struct {
	path, lockPath string
	cfg            boltConfig
	allocSize      int
	mapSize        int      // address space the kept write handle maps (see boltMapSize)
	genFile        *os.File // the lock file, only ever read (never locked) through it

	closeMu sync.RWMutex // shared by every method, exclusive in Close
	closed  bool
	wmu     sync.Mutex // one write transaction of this process at a time

	// The database handle kept between operations (see session): used
	// shared by read sessions, exclusively by write sessions.
	hmu         sync.RWMutex
	handle      *bolt.DB
	handleFile  os.FileInfo // the file it has open
	handleGen   uint64      // the generation it is current for
	handleStale bool        // the file was replaced (compacted): drop it
	closeWrite  bool        // Close's commit: write the recency of reads even alone; guarded by wmu

	mu       sync.Mutex // guards everything below
	idx      boltIndex
	pending  map[string]*boltPending // Puts not yet committed, by record key
	pendSize int64
	pendSeq  uint64
	used     map[string]int64 // uses since the last write, by record key
	broken   error            // a damaged file, when recovery is off

	kick    chan struct{} // wakes the writer goroutine
	closing chan struct{} // closed when Close begins
	stopped chan struct{} // closed when it has exited

	dirty    atomic.Bool  // commits not yet synced to the disk
	writeTxs atomic.Int64 // committed write transactions
	pageHits atomic.Int64 // bytes of pages bbolt allocated for writes, summed over sessions
	writeOps atomic.Int64 // bbolt's write calls, summed over sessions
	maxWait  atomic.Int64 // longest wait for the lock, in ns
	cache    *entryCache
}

// boltIndex is what a process knows of the file's entries as of a
// generation: their sizes and last use, for the size bound, and which
// record keys exist, so that a miss needs no read of the file.
type boltIndex struct {
	valid bool
	gen   uint64
	size  int64
	lru   *list.List // of *boltItem, most recently used at the front
	items map[string]*list.Element
	// The file's invalidations (store_bbolt_inval.go): key prefix → the
	// latest time it was invalidated at (Unix ns), and the floor.
	tombs map[string]int64
	floor int64
}

type boltItem struct {
	rk   string
	size int64
	used int64
}

type boltPending struct {
	e      *Entry
	seq    uint64
	at     int64  // when Put was called: the entry's first use
	sum    uint32 // CRC-32C of e.Body, if hasSum
	hasSum bool
	// checked is set when Put found no invalidation refusing e in the
	// index, as of the file's generation gen. Get serves the entry from
	// the queue only while the file is at that generation: another
	// process's invalidation may have come since.
	checked bool
	gen     uint64
}

// checksumPutter is a Store that takes, with the entry, the CRC-32C
// (Castagnoli) of its body, which the transport computes as the body
// arrives (see storingBody.withSum). A wrong sum is never served: the entry
// then fails its checksum when it is read back, and is a miss.
type checksumPutter interface {
	putChecksummed(ctx context.Context, key, variant string, e *Entry, sum uint32) error
}

var (
	_ Store          = (*BoltStore)(nil)
	_ HeaderUpdater  = (*BoltStore)(nil)
	_ Invalidator    = (*BoltStore)(nil)
	_ checksumPutter = (*BoltStore)(nil)
)

// OpenBoltStore opens the store file at path, creating it (mode 0600), its
// lock file path+".lock" and any missing parent directories (mode 0700). An
// existing file is checked before bbolt maps it: a damaged or foreign file
// is refused with an error wrapping ErrCorruptFile or ErrIncompatibleFile,
// or, with WithBoltRecover, set aside and replaced by an empty store. A
// location that cannot be written is an error that says so. Records found
// inconsistent are removed.
func OpenBoltStore(path string, opts ...BoltOption) (*BoltStore, error) {
	cfg := boltConfig{}
	for _, o := range opts {
		o(&cfg)
	}
	// The module's rule: 0 is the default, negative is no limit (or off).
	switch {
	case cfg.maxBytes == 0:
		cfg.maxBytes = defaultBoltMaxBytes
	case cfg.maxBytes < 0:
		cfg.maxBytes = 1<<63 - 1
	}
	switch {
	case cfg.lockTimeout == 0:
		cfg.lockTimeout = defaultBoltLockTimeout
	case cfg.lockTimeout < 0:
		cfg.lockTimeout = 0
	}
	switch {
	case cfg.cache == 0:
		cfg.cache = defaultBoltCache
	case cfg.cache < 0:
		cfg.cache = 0 // off
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, boltPathError(path, err)
	}
	genFile, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, boltPathError(path, err)
	}
	s := &BoltStore{
		path: path, lockPath: path + ".lock", cfg: cfg, genFile: genFile,
		allocSize: int(min(max(cfg.maxBytes/64, 64<<10), 16<<20)),
		mapSize:   boltMapSize(cfg.maxBytes),
		pending:   make(map[string]*boltPending), used: make(map[string]int64),
		kick: make(chan struct{}, 1), stopped: make(chan struct{}), closing: make(chan struct{}),
		cache: newEntryCache(cfg.cache),
	}
	if err := s.openFile(context.Background()); err != nil {
		s.hmu.Lock()
		s.dropHandle()
		s.hmu.Unlock()
		genFile.Close()
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, boltPathError(path, err)
		}
		return nil, fmt.Errorf("etagcache: open %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

// boltMapSize is how much address space the write handle maps when it
// opens the file: room for the file at its largest (1.25 times the bound
// plus a growth step), up to 1 GiB, on 64-bit platforms. Only address
// space: the kernel backs the pages the file has, as they are read. Growing
// a file past its mapping makes bbolt map it anew, in the middle of a
// commit, after copying every key and value of the transaction (a body of
// 1 MiB included) out of the old mapping; a file that starts empty and grows
// to 64 MiB would do so 11 times.
func boltMapSize(maxBytes int64) int {
	if strconv.IntSize < 64 {
		return 0 // bbolt's own doubling: address space is scarce
	}
	return int(min(maxBytes/4*5+32<<20, 1<<30))
}

// boltPathError explains an error creating the store's folder or files:
// not allowed, a read-only file system, a file where a folder should be.
func boltPathError(path string, err error) error {
	return fmt.Errorf("etagcache: cannot create the cache at %s: %w; choose a writable location (such as one under os.UserCacheDir()) or make its folder writable", path, err)
}

// Get implements Store. An entry waiting to be written, or in the memory
// cache (WithBoltCache) while the file's generation is unchanged, is served
// from memory; a key the index knows is absent is a miss without reading
// the file. Otherwise the entry is copied out of the file, checksums
// verified, and cached. Get writes nothing to the file unless it finds a
// damaged record to remove.
func (s *BoltStore) Get(ctx context.Context, key, variant string) (*Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, ErrStoreClosed
	}
	rk := boltRecordKey(key, variant)
	srk := string(rk)
	gen := readBoltGen(s.genFile)
	s.mu.Lock()
	if p := s.pending[srk]; p != nil {
		if p.checked && p.gen == gen {
			s.mu.Unlock()
			s.touch(srk)
			return p.e, nil
		}
		// Queued before the file last changed, or unchecked: another
		// process may have invalidated its key. Written first, which
		// checks it; then read as any entry.
		s.mu.Unlock()
		if err := s.commit(ctx, nil); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		gen = readBoltGen(s.genFile)
		s.mu.Lock()
	}
	broken := s.broken
	_, known := s.idx.items[srk]
	absent := s.idx.valid && s.idx.gen == gen && !known
	s.mu.Unlock()
	if broken != nil {
		return nil, broken
	}
	if e := s.cache.get(srk, gen); e != nil {
		s.touch(srk)
		return e, nil
	}
	if absent {
		return nil, ErrNotFound
	}
	e, err := s.readEntry(ctx, rk)
	if errors.Is(err, ErrCorruptEntry) {
		if derr := s.removeDamaged(ctx, rk); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, fmt.Errorf("etagcache: bolt store: %w (removed)", err)
	}
	if err != nil {
		return nil, err
	}
	s.touch(srk)
	return e, nil
}

// touch records a use of rk, written to the file with the next write.
func (s *BoltStore) touch(rk string) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.idx.items[rk]; ok {
		el.Value.(*boltItem).used = now
		s.idx.lru.MoveToFront(el)
	}
	s.used[rk] = max(s.used[rk], now)
}

// Put implements Store. The entry is queued and written by a background
// goroutine about 2 ms later (with every other entry queued meanwhile, in
// one transaction);
// Get serves it from the queue until then, unless another process has
// written to the file since (the entry is then written first). When more
// than 16 MiB of bodies are waiting, or the body itself is larger, Put
// writes synchronously. A write-behind that fails is logged. The store
// keeps e, never a copy of it. An entry requested before an invalidation
// of its key (see Invalidate) is dropped, when Put is called or when it is
// written.
func (s *BoltStore) Put(ctx context.Context, key, variant string, e *Entry) error {
	return s.put(ctx, key, variant, &boltPending{e: e})
}

// putChecksummed is Put of an entry whose body's CRC-32C the caller knows.
func (s *BoltStore) putChecksummed(ctx context.Context, key, variant string, e *Entry, sum uint32) error {
	return s.put(ctx, key, variant, &boltPending{e: e, sum: sum, hasSum: true})
}

func (s *BoltStore) put(ctx context.Context, key, variant string, p *boltPending) error {
	e := p.e
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrStoreClosed
	}
	rk := boltRecordKey(key, variant)
	s.mu.Lock()
	// Checked against the index as this process last saw the file: if
	// another process has written since, Get finds the generation moved.
	p.checked, p.gen = s.idx.valid, s.idx.gen
	if p.checked && s.idx.refuses(rk, e.RequestTime) {
		s.mu.Unlock()
		return nil // requested before an invalidation of its key
	}
	if len(e.Body) > boltPendingMax {
		s.mu.Unlock()
		return s.putLarge(ctx, rk, p)
	}
	if old := s.pending[string(rk)]; old != nil {
		s.pendSize -= int64(len(old.e.Body))
	}
	s.pendSeq++
	p.seq, p.at = s.pendSeq, time.Now().UnixNano()
	s.pending[string(rk)] = p
	s.pendSize += int64(len(e.Body))
	full := s.pendSize > boltPendingMax
	s.mu.Unlock()
	if full {
		return s.commit(ctx, nil)
	}
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

// UpdateHeader implements HeaderUpdater: only the metadata record is
// rewritten; the body is not touched. An entry replaced meanwhile, by one
// with another body or other validators, is left alone, and a damaged one
// is removed; both are reported as ErrNotFound. The body is recognised by
// identity when it is the one this store's Get handed out from memory (the
// entry cache or the write queue); any other is compared with the file's.
func (s *BoltStore) UpdateHeader(ctx context.Context, key, variant string, e *Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrStoreClosed
	}
	rk := boltRecordKey(key, variant)
	return s.commit(ctx, func(w *boltWrite) error { return w.updateHeader(rk, e) })
}

// Delete implements Store: every variant stored under key is removed.
func (s *BoltStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrStoreClosed
	}
	prefix := boltKeyPrefix(key)
	err := s.commit(ctx, func(w *boltWrite) error { return w.deletePrefix(prefix) })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Len reports the number of entries held, as this process last saw the
// file, plus those waiting to be written.
func (s *BoltStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.idx.lru.Len()
	for rk := range s.pending {
		if _, ok := s.idx.items[rk]; !ok {
			n++
		}
	}
	return n
}

// Size reports the bytes accounted to the entries held (see
// WithBoltMaxBytes), as this process last saw the file.
func (s *BoltStore) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idx.size
}

// Close writes the entries still waiting and the recency of entries read
// since the last write, syncs the file to disk, and stops the background
// writer. It waits for calls in progress. Calling it again does nothing and
// returns nil.
func (s *BoltStore) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	close(s.kick)
	s.closeMu.Unlock()
	<-s.stopped
	s.wmu.Lock()
	s.closeWrite = true
	s.wmu.Unlock()
	err := s.commit(context.Background(), nil)
	if errors.Is(err, ErrNotFound) {
		err = nil
	}
	if serr := s.syncFile(); err == nil { // outside the lock: other processes need not wait for the disk
		err = serr
	}
	s.mu.Lock()
	if s.broken != nil {
		err = nil // already reported by every call
	}
	s.mu.Unlock()
	s.hmu.Lock()
	s.dropHandle()
	s.hmu.Unlock()
	if cerr := s.genFile.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("etagcache: close %s: %w", s.path, err)
	}
	return nil
}

// writer is the background goroutine that writes queued Puts and, once a
// second, syncs what was written to the disk.
func (s *BoltStore) writer() {
	defer close(s.stopped)
	tick := time.NewTicker(boltSyncEvery)
	defer tick.Stop()
	var last error
	for {
		select {
		case _, ok := <-s.kick:
			if !ok {
				return
			}
			// Let Puts that follow close behind join this transaction:
			// one commit for many is what makes a miss cheap.
			wait := time.NewTimer(boltGroupDelay)
			select {
			case <-wait.C:
			case <-s.closing:
				wait.Stop()
			}
			err := s.commit(context.Background(), nil)
			if err != nil && !errors.Is(err, ErrNotFound) && (last == nil || err.Error() != last.Error()) {
				s.cfg.log.Warn("etagcache: writing cached entries failed; they were dropped", "path", s.path, "err", err)
			}
			last = err // the same failure again is not news
		case <-tick.C:
			if err := s.syncFile(); err != nil {
				s.cfg.log.Warn("etagcache: syncing the cache file failed", "path", s.path, "err", err)
			}
		}
	}
}
