package etagcache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// What bbolt itself cannot survive is checked before a file is mapped (see
// checkBoltMetas); anything else a damaged file can do inside bbolt (a
// panic, a fault on a page of the map that the file no longer backs) is
// turned into an error wrapping ErrCorruptFile by guard.

// guard runs fn with faults on memory-mapped pages turned into panics (so
// a truncated file cannot kill the process), and any panic turned into an
// error wrapping ErrCorruptFile. bbolt's View and Update roll back on a
// panic, releasing the transaction.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt failed reading it: %v", ErrCorruptFile, r)
		}
	}()
	return fn()
}

// bbolt's on-disk meta page, as of format version 2: a 16-byte page header
// (id, flags, count, overflow), then the meta fields in native byte order.
const (
	boltPageHeader   = 16
	boltMetaMagic    = 0xED0CDAED
	boltMetaVersion  = 2
	boltMetaPageFlag = 0x04
	boltMetaSumLen   = 56 // bytes of meta covered by its FNV-64a checksum
	boltNoFreelist   = ^uint64(0)
)

type boltMeta struct {
	magic, version, pageSize uint32
	root, freelist, pgid     uint64
	txid                     uint64
	sumOK                    bool
}

func parseBoltMetaPage(p []byte) (m boltMeta, ok bool) {
	if len(p) < boltPageHeader+boltMetaSumLen+8 {
		return m, false
	}
	ne := binary.NativeEndian
	b := p[boltPageHeader:]
	m.magic, m.version, m.pageSize = ne.Uint32(b), ne.Uint32(b[4:]), ne.Uint32(b[8:])
	m.root, m.freelist, m.pgid, m.txid = ne.Uint64(b[16:]), ne.Uint64(b[32:]), ne.Uint64(b[40:]), ne.Uint64(b[48:])
	h := fnv.New64a()
	_, _ = h.Write(b[:boltMetaSumLen])
	m.sumOK = h.Sum64() == ne.Uint64(b[boltMetaSumLen:])
	return m, true
}

// bboltValid is bbolt's own test of a meta page (magic, version, checksum).
func (m boltMeta) bboltValid() bool {
	return m.magic == boltMetaMagic && m.version == boltMetaVersion && m.sumOK
}

// usable adds what bbolt assumes without checking: the pages the meta
// points to lie inside a file of this size.
func (m boltMeta) usable(size int64) bool {
	ps := int64(m.pageSize)
	return m.bboltValid() && ps >= 1024 && ps <= 1<<16 && ps&(ps-1) == 0 &&
		m.pgid >= 2 && m.pgid <= uint64(size/ps) && m.root >= 2 && m.root < m.pgid &&
		(m.freelist == boltNoFreelist || (m.freelist >= 2 && m.freelist < m.pgid))
}

// checkBoltMetas checks, by reading it, that the file at path is a bbolt
// file that bbolt can map safely: a length that is a whole number of pages,
// at least one valid meta page, and the meta page bbolt would choose (the
// valid one with the higher transaction id) pointing inside the file. An
// empty or missing file passes (bbolt creates a new database). Otherwise
// the error wraps ErrIncompatibleFile (no bbolt meta page at all) or
// ErrCorruptFile.
func checkBoltMetas(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return nil
	}
	var m0, m1 boltMeta
	buf := make([]byte, 4096)
	n, _ := f.ReadAt(buf, 0)
	m0, _ = parseBoltMetaPage(buf[:n])
	ps := int64(4096)
	if m0.bboltValid() {
		ps = int64(m0.pageSize)
	}
	if ps >= 1024 && ps <= 1<<16 {
		n, _ = f.ReadAt(buf, ps)
		m1, _ = parseBoltMetaPage(buf[:n])
	}
	if m0.magic != boltMetaMagic && m1.magic != boltMetaMagic {
		return fmt.Errorf("%w: not a bbolt database (no bbolt header)", ErrIncompatibleFile)
	}
	if !m0.bboltValid() && !m1.bboltValid() {
		return fmt.Errorf("%w: both bbolt meta pages are damaged", ErrCorruptFile)
	}
	if m1.bboltValid() && m1.pageSize != uint32(ps) {
		return fmt.Errorf("%w: meta pages disagree on the page size", ErrCorruptFile)
	}
	if size%ps != 0 || size < 4*ps {
		return fmt.Errorf("%w: length %d is not a whole number of %d-byte pages (truncated?)", ErrCorruptFile, size, ps)
	}
	chosen := m0
	if m1.txid > m0.txid && m1.bboltValid() || !m0.bboltValid() {
		chosen = m1
	}
	if !chosen.usable(size) {
		return fmt.Errorf("%w: the current meta page points past the end of the file (truncated?)", ErrCorruptFile)
	}
	return nil
}

// openBoltDB opens the bbolt file for one operation. Commits do not sync
// (the store syncs on its own schedule), and the file grows by small steps
// so that it stays close to what it holds. mapSize, if positive, is how
// much of the address space bbolt maps from the start: a file that grows
// within it is never mapped again, and each new mapping would make bbolt
// copy every value the transaction holds, bodies included, out of the old
// one (see boltMapSize).
func openBoltDB(path string, readOnly bool, allocSize, mapSize int, timeout time.Duration) (*bolt.DB, *os.File, error) {
	if err := checkBoltMetas(path); err != nil {
		return nil, nil, err
	}
	var f *os.File
	opts := &bolt.Options{
		Timeout: max(timeout, time.Millisecond), ReadOnly: readOnly,
		NoSync: true, NoGrowSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: mapSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			var err error
			f, err = os.OpenFile(name, flag, perm)
			return f, err
		},
	}
	var db *bolt.DB
	err := guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, opts)
		return err
	})
	switch {
	case err == nil:
		db.AllocSize = allocSize
		return db, f, nil
	case errors.Is(err, ErrCorruptFile):
		if f != nil {
			_ = f.Close() // bbolt panicked with the file open and locked
		}
		return nil, nil, err
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%w: another program holds it without etagcache's lock file", ErrStoreLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, nil, fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	return nil, nil, err
}

// boltLock is one hold of the lock file path+".lock". Every operation of
// every process on a store holds it while it has the database open: shared
// to read, exclusive to write, so a writer never frees pages a reader in
// another process still reads. The lock file also holds the generation: a
// counter that every committed write increments, which tells a process
// whether what it knows of the file (its index, its entry cache) is still
// current without opening the database.
type boltLock struct {
	f    *os.File
	wait time.Duration
}

// lockBolt takes the lock, polling every few hundred microseconds (bbolt's
// own lock polls every 50 ms, too coarse for short operations) until
// timeout passes or ctx is done.
func lockBolt(ctx context.Context, path string, exclusive bool, timeout time.Duration) (*boltLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	start := time.Now()
	pause := 50 * time.Microsecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return &boltLock{f: f, wait: time.Since(start)}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		waited := time.Since(start)
		if waited >= timeout {
			f.Close()
			return nil, fmt.Errorf("%w: another process kept it busy for %v", ErrStoreLocked, waited.Round(time.Millisecond))
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, time.Millisecond)
	}
}

func (l *boltLock) release() { _ = l.f.Close() } // closing drops the flock

// readBoltGen reads the generation from an open lock file.
func readBoltGen(f *os.File) uint64 {
	var b [8]byte
	if n, err := f.ReadAt(b[:], 0); n < 8 && err != nil && err != io.EOF {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (l *boltLock) gen() uint64 { return readBoltGen(l.f) }

func (l *boltLock) setGen(g uint64) error {
	_, err := l.f.WriteAt(binary.LittleEndian.AppendUint64(nil, g), 0)
	return err
}
