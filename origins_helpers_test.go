//go:build linux

package etagcache_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etagcache/etagcache"
	"github.com/stretchr/testify/require"
)

// This file starts real origin servers for origins_test.go: each one is a
// child process (or, for Go's FileServer, an httptest server) on a free
// loopback port, with its configuration, document root and logs in
// t.TempDir(), stopped by t.Cleanup.

// origin is a running web server serving files from root.
type origin struct {
	name string
	url  string // http://127.0.0.1:port, no trailing slash
	root string // document root; tests write files here
	hits func() ([]hit, error)
	proc *process // nil for in-process servers
}

// hit is one line of an origin's access log.
type hit struct {
	status       int
	method, path string
	// cond says whether the request carried If-None-Match or
	// If-Modified-Since; condKnown is false when the log cannot tell.
	cond, condKnown bool
}

// requireBinary returns the path of a server binary, or ends the test:
// under CI=true a missing server is a failure, elsewhere a skip that names
// the package to install.
func requireBinary(t *testing.T, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if lp, err := exec.LookPath(filepath.Base(path)); err == nil {
		return lp
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (CI=true): apt-get install %s", filepath.Base(path), pkg)
	}
	t.Skipf("%s not installed: apt-get install %s", filepath.Base(path), pkg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago. The
// server we hand it to binds it itself; startOrigin retries on a clash.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// worldReadable opens dir and its parent (t.TempDir makes both 0700) to the
// unprivileged worker processes that nginx and Apache switch to when they
// are started as root.
func worldReadable(t *testing.T, dir string) {
	t.Helper()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
}

// syncBuffer collects a child's output; it is written by exec's copying
// goroutines while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a server started by a test.
type process struct {
	cmd    *exec.Cmd
	output *syncBuffer // stdout and stderr together
	done   chan struct{}
	err    error // set before done is closed
}

// startProcess starts a server in its own process group, so that stopping
// it also stops the helpers it forked (worker processes, lighttpd's log
// pipe), and kills it should the test binary die first.
func startProcess(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), output: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// stop ends the process group with SIGTERM, and SIGKILL after 5 s.
func (p *process) stop() {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// waitReady polls the port until the server accepts a connection, the
// process exits, or 15 s pass. It reports whether the server is up.
func (p *process) waitReady(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited (%v) before listening on %s:\n%s", p.err, addr, p.output.String())
		case <-time.After(5 * time.Millisecond): // the next connection attempt
		}
	}
	return fmt.Errorf("not listening on %s after 15s:\n%s", addr, p.output.String())
}

// startOrigin runs launch on a free port until the server listens (a port
// taken between freePort and the server's bind gets a second try), and
// stops the server when the test ends.
func startOrigin(t *testing.T, launch func(port int) (*process, *origin)) *origin {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		p, o := launch(port)
		err := p.waitReady(port)
		if err == nil {
			o.proc = p
			o.url = "http://127.0.0.1:" + strconv.Itoa(port)
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("%s output:\n%s", o.name, p.output.String())
				}
			})
			return o
		}
		p.stop()
		lastErr = err
	}
	t.Fatalf("%s did not start: %v", t.Name(), lastErr)
	return nil
}

// hitsFor returns the logged requests for path, waiting (at most 10 s) until
// there are at least n of them: servers write their log after the response.
func (o *origin) hitsFor(t *testing.T, path string, n int) []hit {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := o.hits()
		require.NoError(t, err, "%s access log", o.name)
		var got []hit
		for _, h := range all {
			if h.path == path {
				got = append(got, h)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			require.GreaterOrEqual(t, len(got), n, "%s: requests for %s in the access log", o.name, path)
			return got
		}
		<-time.After(2 * time.Millisecond) // poll the log again
	}
}

// readLines returns the lines of a log file, parsed by parse; lines parse
// rejects are skipped. A file not yet created has no lines.
func readLines(path string, parse func(string) (hit, bool)) ([]hit, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []hit
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if h, ok := parse(sc.Text()); ok {
			out = append(out, h)
		}
	}
	return out, sc.Err()
}

// textLogFormat is the access log line nginx, Apache and lighttpd are all
// configured to write: status, method, path, [If-Modified-Since]
// [If-None-Match], with "-" for an absent field. The dates contain no "]";
// If-None-Match comes last so that whatever escaping a server applies to
// its quotes cannot confuse the parser.
func parseTextLog(line string) (hit, bool) {
	f := strings.SplitN(line, " ", 4)
	if len(f) < 4 {
		return hit{}, false
	}
	status, err := strconv.Atoi(f[0])
	if err != nil {
		return hit{}, false
	}
	rest := f[3]
	ims, inm, ok := strings.Cut(rest, "] [")
	if !ok {
		return hit{}, false
	}
	ims = strings.TrimPrefix(ims, "[")
	inm = strings.TrimSuffix(inm, "]")
	cond := (ims != "-" && ims != "") || (inm != "-" && inm != "")
	return hit{status: status, method: f[1], path: f[2], cond: cond, condKnown: true}, true
}

// callerKind is how a caller of the transport asks for content codings.
type callerKind int

const (
	callerDefault  callerKind = iota // sets no Accept-Encoding: Go's transport asks for gzip and decodes
	callerGzip                       // Accept-Encoding: gzip, decodes the body itself
	callerIdentity                   // Accept-Encoding: identity
)

var callerKinds = []callerKind{callerDefault, callerGzip, callerIdentity}

func (k callerKind) String() string {
	switch k {
	case callerDefault:
		return "default"
	case callerGzip:
		return "gzip"
	case callerIdentity:
		return "identity"
	}
	return "caller(" + strconv.Itoa(int(k)) + ")"
}

// client is an http.Client whose transport is an etagcache Transport over a
// MemoryStore, over a transport of its own (no proxy from the environment:
// origins are on loopback). sent counts, per path, the requests the cache
// really sent, so that a test knows how many lines to wait for in a log
// that a server writes after its response.
type client struct {
	*http.Client
	tr   *etagcache.Transport
	mu   sync.Mutex
	sent map[string]int
	// gaveUp marks paths whose first refused 304 has been seen (see
	// scenario.expectGivenUp); used by one test goroutine only.
	gaveUp map[string]bool
}

func newCachingClient(t *testing.T) *client {
	t.Helper()
	base := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(base.CloseIdleConnections)
	c := &client{sent: map[string]int{}, gaveUp: map[string]bool{}}
	counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c.mu.Lock()
		c.sent[r.URL.Path]++
		c.mu.Unlock()
		return base.RoundTrip(r)
	})
	c.tr = etagcache.NewTransport(etagcache.NewMemoryStore(0),
		etagcache.WithBase(counting), etagcache.WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil))))
	c.Client = &http.Client{Transport: c.tr, Timeout: 30 * time.Second}
	return c
}

// sentTo returns how many requests for path the transport has sent.
func (c *client) sentTo(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent[path]
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// testWriter sends the transport's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// got is what one caller received.
type got struct {
	resp     *http.Response
	status   int
	body     string // decoded, if the caller received gzip
	encoding string // Content-Encoding the caller received
}

// get sends a GET as the caller kind would and returns what it received,
// gunzipping a gzip body the way an explicit-gzip caller must.
func get(t *testing.T, c *client, url string, kind callerKind) got {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	switch kind {
	case callerGzip:
		req.Header.Set("Accept-Encoding", "gzip")
	case callerIdentity:
		req.Header.Set("Accept-Encoding", "identity")
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	g := got{resp: resp, status: resp.StatusCode, body: string(raw), encoding: resp.Header.Get("Content-Encoding")}
	if g.encoding == "gzip" && resp.StatusCode == http.StatusOK {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		require.NoError(t, err, "%s caller: body labelled gzip is not gzip", kind)
		dec, err := io.ReadAll(zr)
		require.NoError(t, err, "%s caller: body labelled gzip is not gzip", kind)
		g.body = string(dec)
	}
	return g
}

// cacheStatus returns this transport's Cache-Status member.
func (g got) cacheStatus() string {
	for _, m := range strings.Split(g.resp.Header.Get("Cache-Status"), ",") {
		if m = strings.TrimSpace(m); strings.HasPrefix(m, "etagcache") {
			return m
		}
	}
	return ""
}

// revalidated reports whether the body came from the store after the
// origin answered 304.
func (g got) revalidated() bool {
	return etagcache.ResultOf(g.resp) == etagcache.ResultRevalidated
}
