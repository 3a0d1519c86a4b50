package redisstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pollUntil calls cond every 20ms until it returns nil or the deadline
// passes. Replication and Sentinel state spread without an event to wait
// on, so the tests poll for them.
func pollUntil(t *testing.T, d time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %v: %v", what, d, err)
		case <-tick.C:
		}
	}
}

// TestSentinelFailover: a master, a replica and a Sentinel; two workers on a
// Sentinel-managed (failover) client. The master is killed with requests
// running; every request succeeds, Sentinel promotes the replica, and the
// workers go on with what the replica holds: an entry stored before the
// failover still makes the other worker's first request conditional.
func TestSentinelFailover(t *testing.T) {
	requireRedis(t)
	dir := t.TempDir()
	mport, err := freePort()
	require.NoError(t, err)
	master, err := startRedis(dir, mport, "--dbfilename", "master.rdb")
	require.NoError(t, err)
	t.Cleanup(master.Kill)
	rport, err := freePort()
	require.NoError(t, err)
	replica, err := startRedis(dir, rport, "--replicaof", "127.0.0.1", strconv.Itoa(mport), "--dbfilename", "replica.rdb")
	require.NoError(t, err)
	t.Cleanup(replica.Kill)

	mc := redis.NewClient(&redis.Options{Addr: master.Addr, Protocol: 2})
	t.Cleanup(func() { mc.Close() })
	pollUntil(t, 15*time.Second, "replica in sync", func(ctx context.Context) error {
		info, err := mc.Info(ctx, "replication").Result()
		if err == nil && !strings.Contains(info, "state=online") {
			err = fmt.Errorf("replication: %s", info)
		}
		return err
	})

	sport, err := freePort()
	require.NoError(t, err)
	conf := filepath.Join(dir, "sentinel.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
		"port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor fleet 127.0.0.1 %d 1\n"+
			"sentinel down-after-milliseconds fleet 1000\nsentinel failover-timeout fleet 10000\n", sport, dir, mport)), 0o600))
	sentinel := &redisServer{Port: sport, Addr: "127.0.0.1:" + strconv.Itoa(sport), args: []string{conf, "--sentinel"}, ready: "+monitor master"}
	require.NoError(t, sentinel.start())
	t.Cleanup(sentinel.Kill)
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr})
	t.Cleanup(func() { sc.Close() })
	pollUntil(t, 20*time.Second, "sentinel knows the replica", func(ctx context.Context) error {
		rs, err := sc.Replicas(ctx, "fleet").Result()
		if err == nil && len(rs) == 0 {
			err = fmt.Errorf("no replica yet")
		}
		return err
	})

	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: "fleet", SentinelAddrs: []string{sentinel.Addr},
		DialTimeout: faultTimeout, ReadTimeout: faultTimeout, WriteTimeout: faultTimeout, PoolTimeout: faultTimeout,
		MaxRetries: 1, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 16 * time.Millisecond, ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { c.Close() })
	o, paths := changingOrigin(t, 8)
	a, b := newWorker(t, c), newWorker(t, c)
	ws := []*worker{a, b}
	stop := hammer(t, o, ws, paths, 4)
	phase(t, o, ws, paths)
	resumes(t, o, a, b, "/before")
	// What A stored before the failover, for B to find on the replica.
	o.Set("/kept", []byte("stored before the failover"))
	a.mustGet(t, o.URL+"/kept")
	pollUntil(t, 10*time.Second, "replica caught up", func(ctx context.Context) error {
		rc := redis.NewClient(&redis.Options{Addr: replica.Addr, Protocol: 2})
		defer rc.Close()
		n, err := rc.Exists(ctx, headerKey(DefaultPrefix, o.URL+"/kept")).Result()
		if err == nil && n == 0 {
			err = fmt.Errorf("not replicated yet")
		}
		return err
	})

	master.Kill()
	phase(t, o, ws, paths)
	pollUntil(t, 30*time.Second, "replica promoted", func(ctx context.Context) error {
		addr, err := sc.GetMasterAddrByName(ctx, "fleet").Result()
		if err == nil && (len(addr) != 2 || addr[1] != strconv.Itoa(rport)) {
			err = fmt.Errorf("master is %v", addr)
		}
		return err
	})
	waitReachable(t, c)
	phase(t, o, ws, paths)
	resumesAfterOutage(t, o, a, b, "/after")

	require.Equal(t, []byte("stored before the failover"), b.mustGet(t, o.URL+"/kept").Body)
	var kept []originReq
	for _, r := range o.Log() {
		if r.Path == "/kept" {
			kept = append(kept, r)
		}
	}
	require.Len(t, kept, 2)
	last := kept[1]
	assert.Equal(t, 304, last.Status, "B's first request for /kept was conditional: the entry survived the failover")
	stop()
}
