package etagcache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// After storing 200 bodies of 1 MiB, the heap holds no more than what the
// entry cache is allowed to keep.
func TestBoltStoreRetainsNothingAfterWrites(t *testing.T) {
	const n, size = 200, 1 << 20
	for _, cache := range []int64{-1, 16 << 20} { // off, and 16 MiB
		t.Run(fmt.Sprint("cache=", cache), func(t *testing.T) {
			s, _ := openTestBolt(t, WithBoltCache(cache), WithBoltMaxBytes(1<<40))
			rng := rand.New(rand.NewPCG(3, 3))
			body := randomBytes(rng, size)
			before := heapInUse()
			ctx := context.Background()
			for i := range n {
				b := bytes.Clone(body)
				b[0] = byte(i)
				require.NoError(t, s.Put(ctx, fmt.Sprint("k", i), "", boltTestEntry(b)))
			}
			boltFlush(t, s)
			after := heapInUse()
			grown := int64(after) - int64(before)
			bound := max(cache, 0) // -1: off
			t.Logf("cache bound %d MiB: heap grew by %.1f MiB after %d Puts of 1 MiB", bound>>20, float64(grown)/(1<<20), n)
			assert.Less(t, grown, bound+4<<20)
			e, err := s.Get(ctx, "k7", "")
			require.NoError(t, err)
			assert.Equal(t, byte(7), e.Body[0])
		})
	}
}

// Under replace-and-evict churn the file stays near the bound.
func TestBoltStoreFileStaysNearBound(t *testing.T) {
	const bound = 8 << 20
	s, path := openTestBolt(t, WithBoltMaxBytes(bound))
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 8))
	var maxSize int64
	for i := range boltLoops(3000) {
		k := fmt.Sprint("k", rng.IntN(200))
		switch op := rng.IntN(20); {
		case op == 0:
			require.NoError(t, s.Delete(ctx, k))
		default:
			size := rng.IntN(8 << 10)
			if rng.IntN(4) == 0 {
				size = rng.IntN(400 << 10)
			}
			require.NoError(t, s.Put(ctx, k, "", boltTestEntry(randomBytes(rng, size), "X-I", strconv.Itoa(i))))
		}
		if i%50 == 0 {
			boltFlush(t, s)
			maxSize = max(maxSize, fileSize(t, path))
		}
	}
	boltFlush(t, s)
	maxSize = max(maxSize, fileSize(t, path))
	t.Logf("bound %d MiB: largest file %.2f MiB (%.2fx the bound), last %.2f MiB; accounted %.2f MiB",
		bound>>20, float64(maxSize)/(1<<20), float64(maxSize)/bound, float64(fileSize(t, path))/(1<<20), float64(s.Size())/(1<<20))
	assert.LessOrEqual(t, s.Size(), int64(bound))
	assert.LessOrEqual(t, float64(maxSize), 1.25*bound)
}

const boltBigEnv = "ETAGCACHE_BOLT_BIG_BYTES"

func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return -1
}

// boltBigChild stores (role "bigput") or serves (role "bigget") one large
// body and prints the process's peak resident memory.
func boltBigChild(role, path string, size int) {
	s, err := OpenBoltStore(path, WithBoltMaxBytes(1<<40))
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	ctx := context.Background()
	start := time.Now()
	switch role {
	case "bigput":
		body := make([]byte, size)
		for i := 0; i < size; i += 4096 {
			body[i] = byte(i >> 12)
		}
		base := vmHWM()
		err = s.Put(ctx, "big", "", &Entry{Status: 200, Header: map[string][]string{"Etag": {`"big"`}}, Body: body})
		if err == nil {
			err = s.Close()
		}
		fmt.Printf("RESULT err=%v base=%d hwm=%d ms=%d\n", err, base, vmHWM(), time.Since(start).Milliseconds())
	case "bigget":
		base := vmHWM()
		e, err := s.Get(ctx, "big", "")
		ok := err == nil && len(e.Body) == size
		for i := 0; ok && i < size; i += 4096 {
			ok = e.Body[i] == byte(i>>12)
		}
		fmt.Printf("RESULT err=%v ok=%v base=%d hwm=%d ms=%d\n", err, ok, base, vmHWM(), time.Since(start).Milliseconds())
		runtime.KeepAlive(e)
	}
}

// Storing and serving a large body: peak resident memory in a child
// process, against the body's size. ETAGCACHE_BOLT_BIG_BYTES sets the size
// (default 128 MiB; the case is 512 MiB).
func TestBoltStoreLargeBodyMemory(t *testing.T) {
	size := 128 << 20
	if v, err := strconv.Atoi(os.Getenv(boltBigEnv)); err == nil && v > 0 {
		size = v
	}
	if role, path := boltChildRole(); role == "bigput" || role == "bigget" {
		boltBigChild(role, path, size)
		return
	}
	path := filepath.Join(t.TempDir(), "big.db")
	for _, role := range []string{"bigput", "bigget"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd, stderr := boltChildCmd(ctx, "TestBoltStoreLargeBodyMemory", role, path, fmt.Sprint(boltBigEnv, "=", size))
		out, err := cmd.Output()
		cancel()
		require.NoError(t, err, "stderr: %.500s", stderr)
		var line string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "RESULT ") {
				line = l
			}
		}
		require.NotEmpty(t, line, "output: %s; stderr: %.500s", out, stderr)
		require.Contains(t, line, "err=<nil>")
		var base, hwm, ms int64
		fields := map[string]*int64{"base": &base, "hwm": &hwm, "ms": &ms}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok && fields[k] != nil {
				*fields[k], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		t.Logf("%s of %d MiB: peak resident %.0f MiB (%.2fx the body; %.0f MiB before the call), %d ms",
			role, size>>20, float64(hwm)/(1<<20), float64(hwm)/float64(size), float64(base)/(1<<20), ms)
		if raceBuild() {
			continue // the race detector's shadow memory counts too: measured, not judged
		}
		if role == "bigget" {
			require.Contains(t, line, "ok=true")
			assert.Less(t, float64(hwm), 1.3*float64(size))
		} else {
			// The body itself plus at most one more copy.
			assert.Less(t, float64(hwm), 2.2*float64(size))
		}
	}
}
