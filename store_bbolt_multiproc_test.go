package etagcache

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	boltParallelProcs = 8
	boltParallelDocs  = 6
	boltOriginEnv     = "ETAGCACHE_BOLT_CHILD_ORIGIN"
	boltOriginLatency = 10 * time.Millisecond
)

// boltParallelDoc is the body the origin serves for document i.
func boltParallelDoc(i int) []byte {
	return randomBytes(rand.New(rand.NewPCG(uint64(i), 77)), 48<<10+i*1000)
}

// boltParallelChild waits for its standard input to close (so that all
// children start together), then fetches every document twice through a
// Transport on the shared store file and prints one RESULT line.
func boltParallelChild(path, origin string) {
	_, _ = io.Copy(io.Discard, os.Stdin)
	start := time.Now()
	s, err := OpenBoltStore(path)
	openTime := time.Since(start)
	if err != nil {
		fmt.Printf("RESULT fail open after %v: %v\n", openTime, err)
		return
	}
	tr := NewTransport(s)
	c := tr.Client()
	for round := range 2 {
		for i := range boltParallelDocs {
			resp, err := c.Get(fmt.Sprint(origin, "/doc/", i))
			if err != nil {
				fmt.Printf("RESULT fail get: %v\n", err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, boltParallelDoc(i)) {
				fmt.Printf("RESULT fail doc %d round %d: status %d, err %v, body ok %v\n", i, round, resp.StatusCode, err, bytes.Equal(body, boltParallelDoc(i)))
				return
			}
		}
	}
	st := tr.Stats()
	err = s.Close()
	fmt.Printf("RESULT ok revalidated=%d stored=%d storeErrors=%d open=%d maxwait=%d total=%d close=%v\n",
		st.Revalidated, st.Stored, st.StoreErrors, openTime.Microseconds(), boltMaxWait(s).Microseconds(), time.Since(start).Microseconds(), err)
}

func TestBoltStoreParallelProcesses(t *testing.T) {
	if role, path := boltChildRole(); role == "parallel" {
		boltParallelChild(path, os.Getenv(boltOriginEnv))
		return
	}
	var requests atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		time.Sleep(boltOriginLatency) // a network's round trip, as CLI tools see it
		i, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/doc/"))
		if err != nil || i < 0 || i >= boltParallelDocs {
			http.NotFound(w, r)
			return
		}
		etag := fmt.Sprintf(`"doc%d"`, i)
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write(boltParallelDoc(i))
	}))
	defer origin.Close()

	path := filepath.Join(t.TempDir(), "shared.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type child struct {
		stdin  io.WriteCloser
		out    *bytes.Buffer
		stderr *bytes.Buffer
		wait   func() error
	}
	var children []child
	for range boltParallelProcs {
		cmd, stderr := boltChildCmd(ctx, "TestBoltStoreParallelProcesses", "parallel", path, boltOriginEnv+"="+origin.URL)
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		var out bytes.Buffer
		cmd.Stdout = &out
		require.NoError(t, cmd.Start())
		children = append(children, child{stdin, &out, stderr, cmd.Wait})
	}
	for _, c := range children { // all started: let them go
		require.NoError(t, c.stdin.Close())
	}
	ok, usedCache := 0, 0
	var maxWait int64
	for i, c := range children {
		err := c.wait()
		line := ""
		sc := bufio.NewScanner(c.out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "RESULT ") {
				line = sc.Text()
			}
		}
		t.Logf("child %d: %s", i, line)
		if err != nil || !strings.HasPrefix(line, "RESULT ok ") {
			t.Errorf("child %d failed: %v %s; stderr: %.300s", i, err, line, c.stderr)
			continue
		}
		ok++
		var reval, stored, storeErrs, open, wait, total int64
		var closeErr bool
		_, err = fmt.Sscanf(line, "RESULT ok revalidated=%d stored=%d storeErrors=%d open=%d maxwait=%d total=%d close=%t",
			&reval, &stored, &storeErrs, &open, &wait, &total, &closeErr)
		require.NoError(t, err, line)
		assert.Zero(t, storeErrs, "child %d", i)
		assert.False(t, closeErr, "child %d", i)
		if reval >= boltParallelDocs {
			usedCache++ // its second round was all revalidations of stored entries
		}
		maxWait = max(maxWait, wait, open)
	}
	t.Logf("%d of %d processes succeeded, %d used the cache; longest wait for the file %v; origin saw %d requests",
		ok, boltParallelProcs, usedCache, time.Duration(maxWait)*time.Microsecond, requests.Load())
	assert.Equal(t, boltParallelProcs, ok)
	assert.Equal(t, boltParallelProcs, usedCache)
	if raceBuild() {
		// The race detector slows every process several times over; the
		// 100 ms promise is checked by .ci/run's plain build of this test.
		return
	}
	assert.Less(t, time.Duration(maxWait)*time.Microsecond, 100*time.Millisecond)
}
