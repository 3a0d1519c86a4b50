package etagcache

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// Tests that need a second process re-run this test binary with the test's
// name and these variables set; the test function then plays the child.
const (
	boltChildRoleEnv = "ETAGCACHE_BOLT_CHILD_ROLE"
	boltChildPathEnv = "ETAGCACHE_BOLT_CHILD_PATH"
	boltChildSeedEnv = "ETAGCACHE_BOLT_CHILD_SEED"
)

func boltChildRole() (role, path string) {
	return os.Getenv(boltChildRoleEnv), os.Getenv(boltChildPathEnv)
}

func boltChildCmd(ctx context.Context, test, role, path string, env ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, boltChildRoleEnv+"="+role, boltChildPathEnv+"="+path)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// A store file stays open in one process while another opens, reads and
// writes it: each sees the other's entries.
func TestBoltStoreSharedWithAnotherProcess(t *testing.T) {
	ctx := context.Background()
	if role, path := boltChildRole(); role == "hold" {
		s, err := OpenBoltStore(path)
		if err == nil {
			err = s.Put(ctx, "child", "", boltTestEntry([]byte("from the child")))
		}
		if err == nil {
			err = s.commit(ctx, nil)
		}
		if err != nil {
			fmt.Println("ERROR", err)
			return
		}
		fmt.Println("OPEN")
		_, _ = io.Copy(io.Discard, os.Stdin) // keep the store open until the parent closes stdin
		e, err := s.Get(ctx, "parent", "")
		if err == nil {
			fmt.Printf("SAW %s\n", e.Body)
		} else {
			fmt.Println("ERROR", err)
		}
		fmt.Println("CLOSE", s.Close())
		return
	}
	path := filepath.Join(t.TempDir(), "cache.db")
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd, stderr := boltChildCmd(cctx, "TestBoltStoreSharedWithAnotherProcess", "hold", path)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "child said nothing; stderr: %s", stderr)
	require.Equal(t, "OPEN", lines.Text(), "stderr: %s", stderr)

	s, err := OpenBoltStore(path, WithBoltLockTimeout(100*time.Millisecond))
	require.NoError(t, err)
	e, err := s.Get(ctx, "child", "")
	require.NoError(t, err)
	assert.Equal(t, "from the child", string(e.Body))
	require.NoError(t, s.Put(ctx, "parent", "", boltTestEntry([]byte("from the parent"))))
	require.NoError(t, s.commit(ctx, nil))

	require.NoError(t, stdin.Close())
	require.True(t, lines.Scan())
	assert.Equal(t, "SAW from the parent", lines.Text())
	require.True(t, lines.Scan())
	require.Equal(t, "CLOSE <nil>", lines.Text())
	_, _ = io.Copy(io.Discard, stdout)
	require.NoError(t, cmd.Wait(), "stderr: %s", stderr)
	require.NoError(t, s.Close())
	assert.Less(t, boltMaxWait(s), 100*time.Millisecond)
}

// boltCrashChild writes entries in a loop until it is killed, reporting on
// stdout when it begins and ends each write. Every entry records its body's
// digest; a header update names the body last put under its key.
func boltCrashChild(path string, seed uint64) {
	s, err := OpenBoltStore(path, WithBoltMaxBytes(16<<20))
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 2))
	bodies := map[string][]byte{}
	for i := 0; ; i++ {
		k, v := fmt.Sprint("k", rng.IntN(20)), fmt.Sprint("v", rng.IntN(3))
		var write func() error
		switch op := rng.IntN(10); {
		case op < 6:
			e := boltTestEntry(randomBytes(rng, rng.IntN(1<<20)), "X-Seq", strconv.Itoa(i))
			bodies[k+"/"+v] = e.Body
			write = func() error { return s.Put(ctx, k, v, e) }
		case op < 9:
			body, ok := bodies[k+"/"+v]
			if !ok {
				continue
			}
			e := boltTestEntry(body, "X-Seq", strconv.Itoa(i))
			write = func() error { return s.UpdateHeader(ctx, k, v, e) }
		default:
			write = func() error { return s.Delete(ctx, k) }
		}
		fmt.Println("begin", i) // the entry is ready: what follows is the write
		if err := write(); err != nil && !errors.Is(err, ErrNotFound) {
			fmt.Println("ERROR", err)
			return
		}
		fmt.Println("wrote", i)
	}
}

// checkBoltFile checks, bypassing the store, that the file is a consistent
// bbolt database and every record pair in it is whole.
func checkBoltFile(t *testing.T, path string) (entries int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		mb, bb := tx.Bucket(boltMetaBucket), tx.Bucket(boltBodyBucket)
		ids := map[string]uint64{}
		require.NoError(t, mb.ForEach(func(k, v []byte) error {
			e, m, err := readBoltEntry(tx, k, uint64(tx.Size()))
			require.NoError(t, err)
			requireWhole(t, e)
			ids[string(k)] = m.bodyID
			entries++
			return nil
		}))
		return bb.ForEach(func(k, _ []byte) error {
			id, ok := ids[string(k[:boltRecordKeyLen])]
			assert.True(t, ok && len(k) == boltBodyKeyLen && id == binary.BigEndian.Uint64(k[boltRecordKeyLen:]), "body without metadata")
			return nil
		})
	}))
	return entries
}

func TestBoltStoreCrashNeverServesTornEntry(t *testing.T) {
	if role, path := boltChildRole(); role == "crash" {
		seed, _ := strconv.ParseUint(os.Getenv(boltChildSeedEnv), 10, 64)
		boltCrashChild(path, seed)
		return
	}
	path := filepath.Join(t.TempDir(), "cache.db")
	kills := 50
	if raceBuild() {
		kills = 12 // a child of a -race build takes a second to start; CI runs all 50 in a plain build
	}
	total := 0
	for round := range kills {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd, stderr := boltChildCmd(ctx, "TestBoltStoreCrashNeverServesTornEntry", "crash", path, fmt.Sprint(boltChildSeedEnv, "=", round))
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := bufio.NewScanner(stdout)
		wrote := 0
		for lines.Scan() {
			l := lines.Text()
			require.True(t, strings.HasPrefix(l, "begin ") || strings.HasPrefix(l, "wrote "), "child: %s; stderr: %s", l, stderr)
			if strings.HasPrefix(l, "wrote ") {
				wrote++
			} else if wrote >= 3+round%7*3 {
				break // the child has just begun a write: kill it in the middle
			}
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		err = cmd.Wait()
		cancel()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "stderr: %s", stderr)
		ws := exit.Sys().(syscall.WaitStatus)
		require.True(t, ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child ended otherwise: %v; stderr: %s", err, stderr)
		require.Greater(t, wrote, 0)

		inFile := checkBoltFile(t, path)
		s, err := OpenBoltStore(path)
		require.NoError(t, err)
		served := 0
		for k := range 20 {
			for v := range 3 {
				e, err := s.Get(context.Background(), fmt.Sprint("k", k), fmt.Sprint("v", v))
				if errors.Is(err, ErrNotFound) {
					continue
				}
				require.NoError(t, err)
				requireWhole(t, e)
				served++
			}
		}
		require.NoError(t, s.Close())
		if round%10 == 0 {
			t.Logf("round %d: killed after %d writes; %d entries in the file, %d served, all whole", round, wrote, inFile, served)
		}
		require.Equal(t, inFile, served)
		total += served
	}
	t.Logf("%d kills in the middle of a write: every entry served was whole (%d served in all)", kills, total)
	require.Greater(t, total, 0)
}

// boltWrites are the write counters of a store: bytes of pages bbolt wrote
// (data pages it allocated, plus one meta page per commit), its write
// calls, committed write transactions, and, where Linux reports it, the
// bytes this process handed to write system calls.
type boltWrites struct {
	pageBytes, writeCalls, commits, wchar int64
}

func boltWritesNow(s *BoltStore) boltWrites {
	w := boltWrites{commits: s.writeTxs.Load(), writeCalls: s.writeOps.Load()}
	w.pageBytes = s.pageHits.Load() + w.commits*int64(os.Getpagesize())
	w.wchar = procWchar()
	return w
}

func (w boltWrites) sub(o boltWrites) boltWrites {
	return boltWrites{w.pageBytes - o.pageBytes, w.writeCalls - o.writeCalls, w.commits - o.commits, w.wchar - o.wchar}
}

// procWchar returns the bytes this process has passed to write system
// calls, or -1 where that is not known.
func procWchar() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func fileSize(t testing.TB, path string) int64 {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

func TestBoltStoreUpdateHeaderDoesNotRewriteBody(t *testing.T) {
	const size, n = 4 << 20, 1000
	ctx := context.Background()
	s, path := openTestBolt(t)
	body := randomBytes(rand.New(rand.NewPCG(1, 1)), size)
	require.NoError(t, s.Put(ctx, "https://example.com/big", "", boltTestEntry(body)))
	boltFlush(t, s)
	digest := boltTestEntry(body).Header.Get("X-Body-Sha256")

	size0, w0, start := fileSize(t, path), boltWritesNow(s), time.Now()
	for i := range n {
		e := boltTestEntry(body, "X-Body-Sha256", digest, "X-Rev", strconv.Itoa(i))
		require.NoError(t, s.UpdateHeader(ctx, "https://example.com/big", "", e))
	}
	up, upTime, growth := boltWritesNow(s).sub(w0), time.Since(start), fileSize(t, path)-size0

	w0, start = boltWritesNow(s), time.Now()
	for i := range 10 {
		require.NoError(t, s.Put(ctx, "https://example.com/big", "", boltTestEntry(body, "X-Rev", strconv.Itoa(i))))
		boltFlush(t, s)
	}
	put, putTime := boltWritesNow(s).sub(w0), time.Since(start)

	t.Logf("UpdateHeader of a 4 MiB entry, per call: %d page bytes, %.1f write calls, %d bytes written (wchar), %v; file grew %d bytes over %d calls",
		up.pageBytes/n, float64(up.writeCalls)/n, up.wchar/n, upTime/n, growth, n)
	t.Logf("Put of a 4 MiB entry, per call: %d page bytes, %.1f write calls, %d bytes written (wchar), %v",
		put.pageBytes/10, float64(put.writeCalls)/10, put.wchar/10, putTime/10)
	assert.Equal(t, int64(n), up.commits)
	assert.Less(t, up.pageBytes, int64(n*size/100), "UpdateHeader rewrote the body")
	assert.Less(t, up.pageBytes/n, int64(64<<10))
	if up.wchar >= 0 {
		assert.Less(t, up.wchar, int64(n*size/100), "UpdateHeader rewrote the body")
	}
	assert.Less(t, growth, int64(32<<20))
	assert.Greater(t, put.pageBytes/10, int64(size))

	e, err := s.Get(ctx, "https://example.com/big", "")
	require.NoError(t, err)
	requireWhole(t, e)
	assert.Equal(t, "9", e.Header.Get("X-Rev"))
}

func TestBoltStoreGetWritesNothing(t *testing.T) {
	n := boltLoops(1000)
	ctx := context.Background()
	s, path := openTestBolt(t)
	body := randomBytes(rand.New(rand.NewPCG(1, 2)), 4<<20)
	require.NoError(t, s.Put(ctx, "big", "", boltTestEntry(body)))
	require.NoError(t, s.Put(ctx, "small", "", boltTestEntry([]byte("small"))))
	boltFlush(t, s)
	fi0, err := os.Stat(path)
	require.NoError(t, err)

	w0, start := boltWritesNow(s), time.Now()
	for range n {
		e, err := s.Get(ctx, "big", "")
		require.NoError(t, err)
		require.Len(t, e.Body, len(body))
	}
	bigTime := time.Since(start)
	start = time.Now()
	for range n {
		_, err := s.Get(ctx, "small", "")
		require.NoError(t, err)
	}
	smallTime := time.Since(start)
	w := boltWritesNow(s).sub(w0)
	t.Logf("Get: %v per 4 MiB entry, %v per small entry; over %d Gets: %d commits, %d write calls, %d bytes written (wchar)",
		bigTime/time.Duration(n), smallTime/time.Duration(n), 2*n, w.commits, w.writeCalls, w.wchar)
	assert.Zero(t, w.commits)
	assert.Zero(t, w.writeCalls)
	assert.Zero(t, w.pageBytes)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, fi0.ModTime(), fi.ModTime())
	assert.Equal(t, fi0.Size(), fi.Size())
}

func benchmarkBolt(b *testing.B, op func(s *BoltStore, body []byte) error) {
	s, _ := openTestBolt(b)
	body := randomBytes(rand.New(rand.NewPCG(1, 3)), 4<<20)
	require.NoError(b, s.Put(context.Background(), "https://example.com/big", "", boltTestEntry(body)))
	w0 := boltWritesNow(s)
	i := 0
	for b.Loop() {
		if err := op(s, body); err != nil {
			b.Fatal(err)
		}
		i++
	}
	w := boltWritesNow(s).sub(w0)
	b.ReportMetric(float64(w.pageBytes)/float64(i), "page-B/op")
	if w.wchar >= 0 {
		b.ReportMetric(float64(w.wchar)/float64(i), "written-B/op")
	}
}

// BenchmarkBoltRevalidate4MiB measures UpdateHeader on a 4 MiB entry: what a
// 304 Not Modified costs the store. The update names the body the store
// was given, as the transport names the one Get returned.
func BenchmarkBoltRevalidate4MiB(b *testing.B) {
	var e *Entry
	benchmarkBolt(b, func(s *BoltStore, body []byte) error {
		if e == nil {
			e = boltTestEntry(body, "X-Rev", "1")
		}
		return s.UpdateHeader(context.Background(), "https://example.com/big", "", e)
	})
}

// BenchmarkBoltRevalidateByPut4MiB is the same revalidation done with Put,
// as for a store without UpdateHeader.
func BenchmarkBoltRevalidateByPut4MiB(b *testing.B) {
	e := boltTestEntry(randomBytes(rand.New(rand.NewPCG(1, 3)), 4<<20))
	benchmarkBolt(b, func(s *BoltStore, _ []byte) error {
		return s.Put(context.Background(), "https://example.com/big", "", e)
	})
}

// BenchmarkBoltGet4MiB measures a hit on a 4 MiB entry (one body copy).
func BenchmarkBoltGet4MiB(b *testing.B) {
	b.SetBytes(4 << 20)
	benchmarkBolt(b, func(s *BoltStore, _ []byte) error {
		_, err := s.Get(context.Background(), "https://example.com/big", "")
		return err
	})
}
