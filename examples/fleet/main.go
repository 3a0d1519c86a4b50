// Command fleet shows a fleet of workers sharing one etagcache through
// Redis: the first worker downloads a document, and every other worker's
// first request for it is already conditional, answered 304 by the origin,
// with the body read from Redis once and then from the worker's own local
// layer.
//
//	go run ./examples/fleet -redis 127.0.0.1:6379
//	go run ./examples/fleet -redis 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002   # Redis Cluster
//
// It needs a running Redis (single node, or Cluster with -cluster or more
// than one address). The origin is an HTTP server started in this process
// on a loopback port; each worker is an etagcache.Transport with its own
// redisstore.Store, as it would be in its own process. Keys are written
// under a prefix of their own and expire after ten minutes.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/redisstore"
)

func main() {
	addrs := flag.String("redis", "127.0.0.1:6379", "Redis address; several, comma-separated, for a Cluster")
	cluster := flag.Bool("cluster", false, "treat a single -redis address as a Cluster node")
	workers := flag.Int("workers", 3, "number of workers")
	size := flag.Int("size", 256<<10, "document size in bytes")
	flag.Parse()
	if err := run(strings.Split(*addrs, ","), *cluster, *workers, *size); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(addrs []string, cluster bool, workers, size int) error {
	// Short timeouts: a Redis that is down or slow costs each request this
	// much at most, and the transport goes on without it.
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: addrs, IsClusterMode: cluster,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		MaxRetries: 1, MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond,
		ContextTimeoutEnabled: true,
	})
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("no Redis at %s: %w", strings.Join(addrs, ","), err)
	}

	body := make([]byte, size)
	for i := range body {
		body[i] = byte('a' + i%26)
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	var sent atomic.Int64 // body bytes the origin sent
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		n, _ := w.Write(body)
		sent.Add(int64(n))
	}))
	defer origin.Close()

	prefix := fmt.Sprintf("etagcache-example:%d:%d:", os.Getpid(), time.Now().UnixNano())
	fmt.Printf("origin %s, %d-byte document; Redis %s; key prefix %s\n\n", origin.URL, size, strings.Join(addrs, ","), prefix)
	fmt.Println("worker  request  origin  body bytes from origin  served")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for w := 1; w <= workers; w++ {
		store := redisstore.New(client, redisstore.WithPrefix(prefix), redisstore.WithTTL(10*time.Minute))
		c := etagcache.NewTransport(store, etagcache.WithLogger(log)).Client()
		for req := 1; req <= 2; req++ {
			before := sent.Load()
			resp, err := c.Get(origin.URL + "/report.json")
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if n != int64(size) {
				return errors.New("short body")
			}
			status := "200"
			if etagcache.ResultOf(resp) == etagcache.ResultRevalidated {
				status = "304"
			}
			fmt.Printf("worker %d  %7d  %6s  %22d  %6d\n", w, req, status, sent.Load()-before, n)
		}
	}
	fmt.Printf("\n%d workers, %d requests: the origin sent the document's body %d time(s)\n", workers, 2*workers, sent.Load()/int64(size))
	return nil
}
