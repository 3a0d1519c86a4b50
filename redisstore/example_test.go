package redisstore_test

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/etagcache/etagcache"
	"github.com/etagcache/etagcache/redisstore"
)

// Workers of a fleet share one Redis: each makes its own Transport on a
// Store over the same client settings. (Not run: it needs a Redis server;
// examples/fleet is a runnable program.)
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:6379",
		// A dead or slow Redis costs a request this much, then the
		// transport goes on without it.
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, MaxRetries: 1,
		ContextTimeoutEnabled: true, // commands end at the request's deadline
	})
	defer rdb.Close()

	store := redisstore.New(rdb,
		redisstore.WithPrefix("myapp:"),    // the default is "etagcache:"
		redisstore.WithTTL(24*time.Hour),   // the default is no expiry: Redis' maxmemory bounds it
		redisstore.WithLocalCache(128<<20)) // bodies this worker keeps in memory; -1 turns it off
	client := etagcache.NewTransport(store).Client()
	fmt.Println(client != nil)
}

// A Redis Cluster client works the same way: New takes any
// redis.UniversalClient. (Not run: it needs a cluster.)
func ExampleNew_cluster() {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
		ContextTimeoutEnabled: true,
	})
	defer rdb.Close()
	client := etagcache.NewTransport(redisstore.New(rdb)).Client()
	_ = client
}
