package redisstore

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoCredentialInRedis sends requests carrying Authorization, Cookie, a
// Vary-named field and an API key in the query string, through misses,
// revalidations with header updates and changes, then reads back every key
// of the Redis (SCAN on every master) and every value (GET or HGETALL, and
// DUMP): none holds any of those values.
func TestNoCredentialInRedis(t *testing.T) {
	secrets := []string{"SeCrEtAuthTok3n", "SeCrEtCookieVal", "SeCrEtVaryValue", "SeCrEtQueryKey"}
	for _, top := range topologies() {
		t.Run(top.name, func(t *testing.T) {
			ctx := context.Background()
			c := top.client(t)
			o := newOrigin(t)
			o.vary = "X-Api-Key"
			o.touch304 = true
			a, b := newWorker(t, c), newWorker(t, c)
			for i, path := range []string{"/private", "/other"} {
				o.Set(path, bytes.Repeat([]byte("public data "), 100+i))
				url := o.URL + path + "?api_key=" + secrets[3]
				for round := range 3 {
					for _, w := range []*worker{a, b} {
						w.mustGet(t, url, "Authorization", "Bearer "+secrets[0], "Cookie", "session="+secrets[1], "X-Api-Key", secrets[2])
						w.mustGet(t, url, "Authorization", "Basic "+secrets[0], "X-Api-Key", "other-"+secrets[2])
					}
					if round == 1 {
						o.Set(path, bytes.Repeat([]byte("changed data "), 100+i))
					}
				}
			}
			require.Positive(t, a.t.Stats().Revalidated+b.t.Stats().Revalidated)

			var keys, hashes, strs int
			err := top.each(ctx, c, func(ctx context.Context, n *redis.Client) error {
				iter := n.Scan(ctx, 0, "*", 1000).Iterator()
				for iter.Next(ctx) {
					k := iter.Val()
					keys++
					var values []string
					switch typ := n.Type(ctx, k).Val(); typ {
					case "string":
						strs++
						values = append(values, n.Get(ctx, k).Val())
					case "hash":
						hashes++
						for f, v := range n.HGetAll(ctx, k).Val() {
							values = append(values, f, v)
						}
					default:
						values = append(values, "unexpected type "+typ)
					}
					values = append(values, k, n.Dump(ctx, k).Val())
					for _, v := range values {
						for _, s := range secrets {
							assert.NotContains(t, strings.ToLower(v), strings.ToLower(s), "key %s", k)
						}
					}
				}
				return iter.Err()
			})
			require.NoError(t, err)
			assert.Positive(t, hashes, "header records were scanned")
			assert.Positive(t, strs, "bodies were scanned")
			t.Logf("%d keys scanned: %d hashes, %d strings", keys, hashes, strs)
		})
	}
}

// TestRootPackageDoesNotLinkRedis: a program that imports etagcache but not
// redisstore links no go-redis.
func TestRootPackageDoesNotLinkRedis(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "list", "-deps", "github.com/etagcache/etagcache").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "github.com/etagcache/etagcache\n")
	assert.NotContains(t, string(out), "redis")
}
