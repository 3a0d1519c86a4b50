package redisstore

// Real redis-server processes for the tests: a single node and a 3-master
// Cluster, each on free loopback ports with its files in a temporary
// folder. The shared ones are started once per test binary and stopped by
// TestMain; tests that kill servers start their own.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // go-redis reports every refused dial; the tests cause many
	code := m.Run()
	stopShared()
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// requireRedis skips the test when redis-server or redis-cli is missing,
// or fails it under CI=true.
func requireRedis(tb testing.TB) {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("%s not found, and CI=true: install it with `apt-get install redis-server`", bin)
			}
			tb.Skipf("%s not found: install it with `apt-get install redis-server`", bin)
		}
	}
}

// freePort returns a loopback port that was free a moment ago, below 55535
// and with port+10000 (a Cluster node's bus port) free too.
func freePort() (int, error) {
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p >= 55535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return p, nil
	}
	return 0, errors.New("no free port pair found")
}

// redisServer is one redis-server process.
type redisServer struct {
	Port int
	Addr string
	args []string
	// ready is the log line that says the server serves; "" means
	// "Ready to accept connections" (a Sentinel says "+monitor" instead).
	ready string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startRedis starts redis-server on port, without persistence, keeping its
// files in dir, and returns when it accepts connections.
func startRedis(dir string, port int, extra ...string) (*redisServer, error) {
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--logfile", ""}
	s := &redisServer{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), args: append(args, extra...)}
	return s, s.start()
}

func (s *redisServer) start() error {
	cmd := exec.Command("redis-server", s.args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(done)
	}()
	out := &lockedBuffer{}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(out, sc.Text())
			if !signalled && strings.Contains(sc.Text(), cmp.Or(s.ready, "Ready to accept connections")) {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.out = cmd, done, out
	s.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-done:
		return fmt.Errorf("redis-server on port %d exited:\n%s", s.Port, out)
	case <-time.After(15 * time.Second):
		s.Kill()
		return fmt.Errorf("redis-server on port %d not ready after 15s:\n%s", s.Port, out)
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (s *redisServer) Kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Signal sends sig (SIGSTOP, SIGCONT) to the process.
func (s *redisServer) Signal(sig os.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Signal(sig)
}

// Restart starts the server again, on the same port with the same files.
func (s *redisServer) Restart() error { return s.start() }

// redisCluster is three masters, no replicas, all slots assigned.
type redisCluster struct {
	Nodes []*redisServer
}

func (c *redisCluster) Addrs() []string {
	var a []string
	for _, n := range c.Nodes {
		a = append(a, n.Addr)
	}
	return a
}

func (c *redisCluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// startCluster starts three cluster-enabled nodes in dir, joins them with
// redis-cli --cluster create, and waits for every node to report
// cluster_state:ok.
func startCluster(dir string) (*redisCluster, error) {
	c := &redisCluster{}
	for range 3 {
		p, err := freePort()
		if err != nil {
			c.Kill()
			return nil, err
		}
		n, err := startRedis(dir, p, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", p)),
			// Long enough that a starved machine (-race, shared cores)
			// does not make nodes think each other failed.
			"--cluster-node-timeout", "5000")
		if err != nil {
			c.Kill()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		c.Kill()
		return nil, fmt.Errorf("redis-cli --cluster create: %w\n%s", err, out)
	}
	if err := c.WaitOK(ctx); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// WaitOK polls CLUSTER INFO on every node until all say cluster_state:ok
// and agree on the node count. Cluster state spreads by gossip, with no
// event to wait on, so this polls.
func (c *redisCluster) WaitOK(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, Protocol: 2})
		for {
			info, err := cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			select {
			case <-ctx.Done():
				cl.Close()
				return fmt.Errorf("cluster node %s not ok: %v %v", n.Addr, err, info)
			case <-tick.C:
			}
		}
		cl.Close()
	}
	return nil
}

// shared holds the servers started once per test binary.
var shared struct {
	mu      sync.Mutex
	dir     string
	single  *redisServer
	cluster *redisCluster
}

func sharedDir() (string, error) {
	if shared.dir == "" {
		d, err := os.MkdirTemp("", "redisstore-test-")
		if err != nil {
			return "", err
		}
		shared.dir = d
	}
	return shared.dir, nil
}

// sharedSingle returns the package's single-node server, starting it on
// first use.
func sharedSingle(t testing.TB) *redisServer {
	t.Helper()
	requireRedis(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.single == nil {
		dir, err := sharedDir()
		if err == nil {
			var p int
			if p, err = freePort(); err == nil {
				shared.single, err = startRedis(dir, p)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return shared.single
}

// sharedCluster returns the package's cluster, starting it on first use.
func sharedCluster(t testing.TB) *redisCluster {
	t.Helper()
	requireRedis(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		dir, err := sharedDir()
		if err == nil {
			dir = filepath.Join(dir, "cluster")
			if err = os.MkdirAll(dir, 0o700); err == nil {
				shared.cluster, err = startCluster(dir)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return shared.cluster
}

// stopShared ends the shared servers and removes their files (TestMain).
func stopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.single != nil {
		shared.single.Kill()
	}
	if shared.cluster != nil {
		shared.cluster.Kill()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
}

// stopSignal and contSignal freeze and thaw a server: a Redis that accepts
// connections and never answers.
var stopSignal, contSignal os.Signal = syscall.SIGSTOP, syscall.SIGCONT
