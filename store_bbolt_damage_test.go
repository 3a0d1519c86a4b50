package etagcache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Damaged files are opened and read in a child process (this test binary,
// re-run), so that a crash the runtime cannot turn into a panic (SIGSEGV or
// SIGBUS inside the memory map, a fatal error) ends the child, not the test
// run, and is counted as a failure.

const boltDamageKeys = 24

// boltDamageFixture writes a store of self-checking entries, small ones and
// some large enough to take overflow pages, and returns its bytes.
func boltDamageFixture(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fixture.db")
	s, err := OpenBoltStore(path)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(11, 11))
	for i := range boltDamageKeys {
		k := fmt.Sprint("k", i)
		e := selfCheckingEntry(rng, k, "")
		if i%4 == 0 {
			e.Body = append([]byte(k+"\x00\x00"), randomBytes(rng, 100_000+rng.IntN(100_000))...)
			e.Body = appendDigest(e.Body)
		}
		require.NoError(t, s.Put(context.Background(), k, "", e))
	}
	require.NoError(t, s.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func appendDigest(b []byte) []byte {
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// boltDamageChild opens the store at path and reads every fixture key,
// printing one RESULT line: entries served, served entries that were wrong,
// and errors other than misses.
func boltDamageChild(path string) {
	var logs bytes.Buffer
	s, err := OpenBoltStore(path)
	refused := ""
	if err != nil {
		// Refused: it must say why, and recovery must then give a working,
		// empty store with one log line.
		if !errors.Is(err, ErrCorruptFile) && !errors.Is(err, ErrIncompatibleFile) {
			fmt.Printf("RESULT bad-open-error err=%q\n", err.Error())
			return
		}
		refused = "refused "
		s, err = OpenBoltStore(path, WithBoltRecover(true), WithBoltLogger(slog.New(slog.NewTextHandler(&logs, nil))))
		if err != nil {
			fmt.Printf("RESULT recover-failed err=%q\n", err.Error())
			return
		}
		if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "set aside") {
			fmt.Printf("RESULT recover-log lines=%d log=%q\n", n, logs.String())
			return
		}
	}
	served, wrong, errs := 0, 0, 0
	ctx := context.Background()
	for round := range 2 { // the second round reads what the first left (and the memory cache)
		for i := range boltDamageKeys {
			k := fmt.Sprint("k", i)
			e, err := s.Get(ctx, k, "")
			switch {
			case err == nil:
				served++
				if checkSelfCheckingEntry(e, k, "") != nil {
					wrong++
				}
			case !errors.Is(err, ErrNotFound):
				errs++
			}
			if round == 1 && i == 0 { // writing to a damaged file must not crash either
				if err := s.Put(ctx, "new", "", selfCheckingEntry(rand.New(rand.NewPCG(5, 5)), "new", "")); err != nil {
					errs++
				}
			}
		}
	}
	cerr := s.Close()
	fmt.Printf("RESULT ok %sserved=%d wrong=%d errors=%d close=%v\n", refused, served, wrong, errs, cerr != nil)
}

type boltDamageResult struct {
	crashed, hung, wrong bool
	line, stderr         string
}

func runBoltDamageChild(t *testing.T, path string) boltDamageResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, stderr := boltChildCmd(ctx, "TestBoltStoreSurvivesDamage", "damage", path)
	out, err := cmd.Output()
	r := boltDamageResult{stderr: stderr.String()}
	if ctx.Err() != nil {
		r.hung = true
		return r
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "RESULT ") {
			r.line = l
		}
	}
	if err != nil || r.line == "" {
		r.crashed = true
		return r
	}
	r.wrong = !strings.Contains(r.line, " wrong=0 ")
	r.crashed = !strings.HasPrefix(r.line, "RESULT ok ") // a failed recovery counts as one
	return r
}

func TestBoltStoreSurvivesDamage(t *testing.T) {
	if role, path := boltChildRole(); role == "damage" {
		boltDamageChild(path)
		return
	}
	fixture := boltDamageFixture(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(99, 1))
	type trial struct {
		name string
		data []byte
	}
	var trials []trial
	flip := func(n int) []byte {
		b := bytes.Clone(fixture)
		for range n {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		return b
	}
	for i := range 100 {
		trials = append(trials, trial{fmt.Sprint("flip1-", i), flip(1)})
	}
	for i := range 20 {
		trials = append(trials, trial{fmt.Sprint("flip16-", i), flip(16)})
	}
	// Bodies changed in place at the same length.
	for i := range 10 {
		b := bytes.Clone(fixture)
		off := len(b)/2 + i*4096 + 100
		if off < len(b) {
			b[off] ^= 0x55
		}
		trials = append(trials, trial{fmt.Sprint("inplace-", i), b})
	}
	n := len(fixture)
	for _, cut := range []int{1, 100, 4095, 4096, 4096 + 100, 8191, 8192, 12288, n / 4, n / 2, 3 * n / 4, n - 4096, n - 100, n - 1} {
		trials = append(trials, trial{fmt.Sprint("truncate-", cut), bytes.Clone(fixture[:cut])})
	}
	foreign := append([]byte("SQLite format 3\x00"), make([]byte, 8192)...)
	trials = append(trials,
		trial{"foreign-sqlite", foreign},
		trial{"foreign-text", bytes.Repeat([]byte("not a database\n"), 3000)},
		trial{"zeros", make([]byte, 64<<10)})

	var crashed, hung, wrong, refused int
	if raceBuild() {
		// A child of a -race build takes a second to start: a quarter of the
		// trials here, all of them in a plain build (which CI runs too).
		var some []trial
		for i := 0; i < len(trials); i += 4 {
			some = append(some, trials[i])
		}
		trials = some
	}
	for _, tr := range trials {
		path := filepath.Join(dir, tr.name+".db")
		require.NoError(t, os.WriteFile(path, tr.data, 0o600))
		r := runBoltDamageChild(t, path)
		switch {
		case r.hung:
			hung++
			t.Errorf("%s: the child hung", tr.name)
		case r.crashed:
			crashed++
			stderr := r.stderr
			if i := strings.Index(stderr, "\n\ngoroutine "); i > 0 {
				stderr = stderr[:i]
			}
			t.Errorf("%s: the child failed: %.400s (result %q)", tr.name, stderr, r.line)
		case r.wrong:
			wrong++
			t.Errorf("%s: a wrong entry was served: %s", tr.name, r.line)
		}
		if strings.Contains(r.line, " refused ") {
			refused++
		}
	}
	t.Logf("%d damaged files: %d crashes, %d hangs, %d with a wrong entry served, %d refused at open (then recovered)", len(trials), crashed, hung, wrong, refused)
	assert.Zero(t, crashed+hung+wrong)
}

func TestBoltStoreRecoverSetsDamagedFileAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	fixture := boltDamageFixture(t)
	require.NoError(t, os.WriteFile(path, fixture[:len(fixture)/2], 0o600)) // cut in half

	_, err := OpenBoltStore(path)
	require.ErrorIs(t, err, ErrCorruptFile)
	assert.Contains(t, err.Error(), path)
	after, rerr := os.ReadFile(path)
	require.NoError(t, rerr)
	assert.Len(t, after, len(fixture)/2, "refused without recovery: left untouched")

	var logs bytes.Buffer
	s, err := OpenBoltStore(path, WithBoltRecover(true), WithBoltLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"), "one log line: %s", logs.String())
	assert.Contains(t, logs.String(), "set aside")
	aside, err := filepath.Glob(path + ".corrupt-*")
	require.NoError(t, err)
	require.Len(t, aside, 1)
	kept, err := os.ReadFile(aside[0])
	require.NoError(t, err)
	assert.Equal(t, fixture[:len(fixture)/2], kept, "the damaged file is kept as it was")

	ctx := context.Background()
	_, err = s.Get(ctx, "k1", "")
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry([]byte("new"))))
	boltFlush(t, s)
	e, err := s.Get(ctx, "k", "")
	require.NoError(t, err)
	assert.Equal(t, "new", string(e.Body))
}

// A file damaged while a store has it open (here: replaced by a file of
// another format) is found by the next operation that reads it; with
// recovery it is set aside and the store goes on.
func TestBoltStoreRecoverWhileOpen(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	s, path := openTestBolt(t, WithBoltRecover(true), WithBoltCache(-1), WithBoltLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, s.Put(ctx, "k", "", boltTestEntry([]byte("x"))))
	boltFlush(t, s)
	require.NoError(t, os.WriteFile(path+".tmp", bytes.Repeat([]byte("garbage!"), 4096), 0o600))
	require.NoError(t, os.Rename(path+".tmp", path))
	held, err := lockBolt(ctx, path+".lock", true, time.Second) // as another process's write would
	require.NoError(t, err)
	require.NoError(t, held.setGen(held.gen()+1))
	held.release()

	_, err = s.Get(ctx, "k", "")
	require.ErrorIs(t, err, ErrNotFound)
	assert.Equal(t, 1, strings.Count(logs.String(), "\n"), "one log line: %s", logs.String())
	require.NoError(t, s.Put(ctx, "k2", "", boltTestEntry([]byte("y"))))
	boltFlush(t, s)
	e, err := s.Get(ctx, "k2", "")
	require.NoError(t, err)
	assert.Equal(t, "y", string(e.Body))
}

func TestBoltStoreUnwritableLocation(t *testing.T) {
	if os.Geteuid() == 0 {
		// root writes anywhere; a path under a regular file cannot be
		// created by anyone.
		t.Log("running as root: using a path under a regular file")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	for _, path := range []string{filepath.Join(file, "cache.db"), "/proc/etagcache-test/cache.db"} {
		_, err := OpenBoltStore(path)
		require.Error(t, err, path)
		assert.Contains(t, err.Error(), path)
		assert.Contains(t, err.Error(), "choose a writable location")
		assert.NotContains(t, err.Error(), "\n")
	}
}

// rawBoltRecord returns a well-formed meta record for e with body, under
// body id 7, whose checksums then may be spoiled on purpose.
func rawBoltRecord(e *Entry, body []byte) boltMetaRecord {
	return boltMetaRecord{used: 1, bodyLen: uint64(len(body)), bodyCRC: crc32.Checksum(body, castagnoli), bodyID: 7, meta: EncodeEntryMeta(e)}
}

// putRaw writes a meta record and body chunks under key and variant into
// the file at path, bypassing the store. Without a meta record, the chunks
// are marked as those of a large Put in progress.
func putRaw(t *testing.T, path, key, variant string, meta []byte, body []byte) {
	t.Helper()
	rk := boltRecordKey(key, variant)
	writeBoltFile(t, path, func(tx *bolt.Tx) error {
		if meta != nil {
			if err := tx.Bucket(boltMetaBucket).Put(rk, meta); err != nil {
				return err
			}
		} else { // chunks of a large Put that was cut short
			mark := append(bytes.Clone(boltLargeMark), boltBodyKey(rk, 7)...)
			if err := tx.Bucket(boltSchemaBucket).Put(mark, nil); err != nil {
				return err
			}
		}
		return putBoltChunks(tx, rk, 7, body, 0)
	})
}

// boltView runs fn in a read transaction on the file at path, bypassing
// the store.
func boltView(t testing.TB, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(fn))
}

func TestBoltStoreCorruptRecordsAreMissesAndRemoved(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := OpenBoltStore(path)
	require.NoError(t, err)
	require.NoError(t, s.Put(ctx, "good", "", boltTestEntry([]byte("fine"))))
	require.NoError(t, s.Close())

	body := []byte("hello")
	e := boltTestEntry(body)
	good := rawBoltRecord(e, body)
	flipped := good.bytes()
	flipped[len(flipped)-3] ^= 1
	undecodable := good
	undecodable.meta = []byte("ETC\x01garbage")
	withBody := rawBoltRecord(e, []byte("xy"))
	withBody.meta = EncodeEntry(boltTestEntry([]byte("xy")))
	putRaw(t, path, "flipped", "", flipped, body)                       // meta checksum: found on opening
	putRaw(t, path, "undecodable", "", undecodable.bytes(), body)       // found by Get
	putRaw(t, path, "samelength", "", good.bytes(), []byte("jello"))    // body changed in place
	putRaw(t, path, "length", "", good.bytes(), []byte("hello, world")) // body length differs
	putRaw(t, path, "withbody", "", withBody.bytes(), []byte("xy"))     // body in the meta record
	putRaw(t, path, "orphan", "", nil, body)                            // chunk without meta: found on opening
	putRaw(t, path, "nochunk", "", good.bytes(), nil)                   // meta without chunks
	putRaw(t, path, "good2", "", good.bytes(), body)                    // whole

	s, err = OpenBoltStore(path)
	require.NoError(t, err)
	defer s.Close()
	for _, c := range []struct {
		key    string
		atOpen bool
	}{{"flipped", true}, {"orphan", true}, {"undecodable", false}, {"samelength", false}, {"length", false}, {"withbody", false}, {"nochunk", false}} {
		_, err := s.Get(ctx, c.key, "")
		if c.atOpen {
			require.ErrorIs(t, err, ErrNotFound, c.key)
		} else {
			require.ErrorIs(t, err, ErrCorruptEntry, c.key)
			_, err = s.Get(ctx, c.key, "")
			require.ErrorIs(t, err, ErrNotFound, "%s: reported once, then a plain miss", c.key)
		}
		boltView(t, path, func(tx *bolt.Tx) error {
			rk := boltRecordKey(c.key, "")
			_, mok := boltGet(tx.Bucket(boltMetaBucket), rk)
			k, _ := tx.Bucket(boltBodyBucket).Cursor().Seek(rk)
			assert.False(t, mok || bytes.HasPrefix(k, rk), "records of %q still in the file", c.key)
			return nil
		})
		require.ErrorIs(t, s.UpdateHeader(ctx, c.key, "", boltTestEntry(nil)), ErrNotFound, c.key)
	}
	for _, k := range []string{"good", "good2"} {
		e, err := s.Get(ctx, k, "")
		require.NoError(t, err)
		requireWhole(t, e)
	}
	assert.Equal(t, 2, s.Len())

	// A record damaged while the store is open is caught by UpdateHeader too.
	writeBoltFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(boltMetaBucket).Put(boltRecordKey("good", ""), flipped)
	})
	require.ErrorIs(t, s.UpdateHeader(ctx, "good", "", boltTestEntry(nil)), ErrNotFound)
	assert.Equal(t, 1, s.Len())
}
